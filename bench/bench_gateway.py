"""GET /api/session through gateway + core vs a plain Tornado handler, with wrk.

Prints requests/s and ratios (target >= 0.6) of:
  - a plain Tornado handler returning the same JSON, one process (the baseline);
  - the real gateway answering in-process, without a core or gRPC (the
    ceiling of the gateway's own Tornado path);
  - the real gateway in front of a constant gRPC servicer (the floor of the
    gRPC hop itself, with no auth, database or logging);
  - the real gateway in front of the real core, making one gRPC call per
    request (gateway_multiplex=false);
  - the same with unary calls carried over one multiplexed stream
    (appliance/http/multiplexed.py, the default);
  these four run one gateway process (http_workers=1), like the baseline;
  - the appliance as shipped: the default http_workers, one gateway worker
    per CPU (at most 4; appliance/http/workers.py).
All run on this machine in the same run; the ratios are what count.

    python -m bench.bench_gateway [--seconds 10] [--connections 32] [--log-level INFO]

--log-level: the appliances' log level (default WARNING: the gateway's own
path; INFO, the shipped default, adds an access line per request in the
gateway and a call line in the core, both also fed to /sse/logs).

--baseline DIR: instead, compare this checkout with another one (e.g.
``git archive main | tar -x -C DIR``): the same appliance (one gateway worker,
and as shipped) from both, each wrk run of one right after the same run of
the other (which goes first alternates), and the ratio this/baseline per pair
(median over the rounds), so load from elsewhere on the machine hits both alike.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from harness import Appliance, free_port  # noqa: E402

from appliance.http.workers import worker_count  # noqa: E402

SHIPPED_WORKERS = worker_count(0)


def wrk(url: str, token: str, seconds: int, connections: int) -> float:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-H", f"Authorization: Bearer {token}", url],
        capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def start_floor(tmp: Path):
    """The real gateway process in front of bench/trivial_core.py."""
    sock = tmp / "floor.sock"
    core = subprocess.Popen([sys.executable, str(Path(__file__).with_name("trivial_core.py")), str(sock)])
    port = free_port()
    env = {**os.environ, "APPLIANCE_CONFIG": "/dev/null", "APPLIANCE_DATA_DIR": str(tmp / "floor"),
           "APPLIANCE_CORE_SOCKET": str(sock), "APPLIANCE_HTTP_PORT": str(port), "APPLIANCE_LOG_LEVEL": "WARNING",
           "APPLIANCE_HTTP_WORKERS": "1"}
    gateway = subprocess.Popen([sys.executable, "-m", "appliance.cli", "http"], env=env)
    return [core, gateway], f"http://127.0.0.1:{port}/api/session"


def wait_up(url: str) -> None:
    for _ in range(100):
        try:
            if requests.get(url, timeout=1).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise TimeoutError(url)


def start_from(checkout: Path | None, data_dir: Path, **settings) -> Appliance:
    """An appliance whose daemons run the code of *checkout* (None: this one)."""
    here = os.getcwd()
    if checkout is not None:
        os.chdir(checkout)  # `python -m appliance.cli` imports from its working directory first
    try:
        return Appliance(data_dir, **settings).start()
    finally:
        os.chdir(here)


def compare(args) -> None:
    baseline = Path(args.baseline).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        apps = {(which, workers): start_from(checkout, tmp / f"{which}-{workers}", log_level=args.log_level,
                                            **({"http_workers": 1} if workers == "one worker" else {}))
                for which, checkout in (("baseline", baseline), ("this", None))
                for workers in ("one worker", "as shipped")}
        try:
            targets = {key: (app.url + "/api/session", app.admin().token) for key, app in apps.items()}
            for url, bearer in targets.values():
                wrk(url, bearer, 2, args.connections)  # warm up
            rates: dict = {key: [] for key in targets}
            for round_ in range(args.rounds):
                for workers in ("one worker", "as shipped"):
                    # alternate which goes first: no side gets the better slot every time
                    for which in ("baseline", "this")[::1 if round_ % 2 else -1]:
                        url, bearer = targets[(which, workers)]
                        rates[(which, workers)].append(wrk(url, bearer, args.seconds, args.connections))
        finally:
            for app in apps.values():
                app.close()
    print(f"GET /api/session at log level {args.log_level}, wrk {args.connections} connections, "
          f"{args.rounds} x {args.seconds}s; baseline: {baseline}")
    print(f"{'':<14}{'baseline req/s':>16}{'this req/s':>12}{'this/baseline':>15}")
    for workers in ("one worker", "as shipped"):
        before, after = rates[("baseline", workers)], rates[("this", workers)]
        ratio = statistics.median(a / b for a, b in zip(after, before, strict=True))
        print(f"{workers:<14}{statistics.median(before):>16.0f}{statistics.median(after):>12.0f}{ratio:>15.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--log-level", default="WARNING")
    ap.add_argument("--baseline", help="another checkout to compare this one with (see above)")
    args = ap.parse_args()
    if args.baseline:
        return compare(args)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        app = Appliance(tmp / "app", log_level=args.log_level).start()
        one_worker = Appliance(tmp / "one-worker", log_level=args.log_level, http_workers=1).start()
        per_call = Appliance(tmp / "per-call", log_level=args.log_level, http_workers=1,
                             gateway_multiplex="false").start()
        port = free_port()
        procs = [subprocess.Popen([sys.executable, str(Path(__file__).with_name("plain_tornado.py")), str(port)])]
        alone_port = free_port()
        procs.append(subprocess.Popen([sys.executable, str(Path(__file__).with_name("gateway_no_core.py")),
                                       str(alone_port)]))
        try:
            floor_procs, floor_url = start_floor(tmp)
            procs += floor_procs
            token = app.admin().token
            urls = {  # name -> (url, token)
                "plain Tornado handler (baseline)": (f"http://127.0.0.1:{port}/api/session", token),
                "gateway alone (no core, no gRPC)": (f"http://127.0.0.1:{alone_port}/api/session", token),
                "gateway -> constant servicer": (floor_url, token),
                "gateway -> core, a gRPC call each": (per_call.url + "/api/session", per_call.admin().token),
                "gateway -> core, multiplexed": (one_worker.url + "/api/session", one_worker.admin().token),
                "appliance as shipped": (app.url + "/api/session", token),
            }
            for url, bearer in urls.values():
                wait_up(url)
                wrk(url, bearer, 2, args.connections)  # warm up
            rates = {name: [] for name in urls}
            for _ in range(args.rounds):  # interleaved, so drift hits all alike
                for name, (url, bearer) in urls.items():
                    rates[name].append(wrk(url, bearer, args.seconds, args.connections))
        finally:
            for p in procs:
                p.terminate()
                p.wait()
            for appliance in (app, one_worker, per_call):
                appliance.close()
    best = {name: statistics.median(r) for name, r in rates.items()}
    baseline = best["plain Tornado handler (baseline)"]
    print(f"GET /api/session, wrk {args.connections} connections, median of {args.rounds} x {args.seconds}s")
    print(f"{'':<38}{'req/s':>9}{'ratio':>8}")
    for name, rate in best.items():
        print(f"{name:<38}{rate:>9.0f}{rate / baseline:>8.2f}")
    print(f"({SHIPPED_WORKERS} gateway workers as shipped on this machine)")
    print(f"target: appliance/baseline >= 0.60 -> {best['appliance as shipped'] / baseline:.2f}"
          f" (one gateway process: {best['gateway -> core, multiplexed'] / baseline:.2f})")


if __name__ == "__main__":
    main()
