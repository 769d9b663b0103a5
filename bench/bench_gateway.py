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

``--baseline REF`` instead measures this checkout against the code of REF (a
git ref, put in a detached git worktree, or a directory holding another
checkout; first on the PYTHONPATH of its processes, which run in a scratch
directory so the checkout's own ``appliance/`` does not shadow it):
the appliance as shipped and with one gateway worker, both sides interleaved
round by round, and prints current/baseline (e.g. what the Prometheus
instruments cost the gateway).

    python -m bench.bench_gateway [--seconds 10] [--connections 32] [--log-level INFO]
                                  [--baseline REF|DIR [--sequential 2000]]

--log-level: the appliances' log level (default WARNING: the gateway's own
path; INFO, the shipped default, adds an access line per request in the
gateway and a call line in the core, both also fed to /sse/logs).
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


def wrk(url: str, token: str, seconds: int, connections: int, counted: list | None = None) -> float:
    """Requests/s; the number of requests is appended to ``counted`` if given."""
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-H", f"Authorization: Bearer {token}", url],
        capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    if counted is not None:
        counted.append(int(re.search(r"(\d+) requests in", out).group(1)))
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def cpu_seconds(app: Appliance) -> float:
    """CPU time (user + system) of the appliance's processes so far: the core,
    the gateway and its workers. Unlike requests/s, what other programs on a
    shared machine do barely moves it."""
    pids = {p.pid for p in app.procs.values()}
    for p in list(pids):
        pids |= {int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()}
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


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


def cpu_per_sequential_request(apps: dict, tokens: dict, rounds: int, count: int) -> dict[str, list[float]]:
    """CPU us per request of ``count`` requests one after the other on one
    kept-alive connection, each side in turn: no batching, least sensitive
    to what else the machine runs."""
    out: dict[str, list[float]] = {side: [] for side in apps}
    sessions = {}
    for side in apps:
        sessions[side] = requests.Session()
        sessions[side].headers["Authorization"] = f"Bearer {tokens[side]}"
    for round_no in range(rounds):
        for side in (list(apps) if round_no % 2 == 0 else list(apps)[::-1]):
            app, session = apps[side], sessions[side]
            before = cpu_seconds(app)
            for _ in range(count):
                session.get(app.url + "/api/session").raise_for_status()
            out[side].append((cpu_seconds(app) - before) / count * 1e6)
    return out


def against_baseline(ref: str, args) -> None:
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        given = Path(ref).is_dir()
        old = Path(ref).resolve() if given else tmp / "baseline-src"
        if not given:
            subprocess.run(["git", "-C", str(root), "worktree", "add", "--detach", "-f", str(old), ref],
                           check=True, capture_output=True)
        here = os.getcwd()
        os.chdir(tmp)  # `python -m appliance.cli` puts the working directory first on sys.path
        apps: dict[str, Appliance] = {}
        try:
            for side, path in (("baseline", str(old)), ("current", None)):
                for label, settings in (("as shipped", {}), ("one worker", {"http_workers": 1})):
                    app = Appliance(tmp / f"{side}-{label.replace(' ', '-')}", log_level=args.log_level,
                                    **settings)
                    if path:
                        app.env["PYTHONPATH"] = path
                    apps[f"{side}, {label}"] = app.start()
            tokens = {name: app.admin().token for name, app in apps.items()}
            for name, app in apps.items():
                wrk(app.url + "/api/session", tokens[name], 2, args.connections)  # warm up
            rates: dict[str, list[float]] = {name: [] for name in apps}
            cpu_us: dict[str, list[float]] = {name: [] for name in apps}  # CPU per request
            for round_no in range(args.rounds):  # interleaved, the order alternating
                for name in (list(apps) if round_no % 2 == 0 else list(apps)[::-1]):
                    before, counted = cpu_seconds(apps[name]), []
                    rates[name].append(wrk(apps[name].url + "/api/session", tokens[name], args.seconds,
                                           args.connections, counted))
                    cpu_us[name].append((cpu_seconds(apps[name]) - before) / counted[0] * 1e6)
            if args.sequential:
                sequential = cpu_per_sequential_request(
                    {side: apps[f"{side}, one worker"] for side in ("baseline", "current")},
                    {side: tokens[f"{side}, one worker"] for side in ("baseline", "current")},
                    args.rounds, args.sequential)
        finally:
            for app in apps.values():
                app.close()
            os.chdir(here)
            if not given:
                subprocess.run(["git", "-C", str(root), "worktree", "remove", "--force", str(old)],
                               capture_output=True)
    best = {name: statistics.median(r) for name, r in rates.items()}
    cpu = {name: statistics.median(r) for name, r in cpu_us.items()}
    print(f"GET /api/session at log level {args.log_level}, wrk {args.connections} connections, "
          f"median of {args.rounds} x {args.seconds}s")
    print(f"{'':42}{'baseline':>10}{'current':>10}{'ratio':>8}")
    for label in ("as shipped", "one worker"):
        b, c = best[f"baseline, {label}"], best[f"current, {label}"]
        print(f"{label + ' (req/s)':42}{b:>10.0f}{c:>10.0f}{c / b:>8.3f}")
        b, c = cpu[f"baseline, {label}"], cpu[f"current, {label}"]
        print(f"{label + ' (CPU us per request, all daemons)':42}{b:>10.0f}{c:>10.0f}{c / b:>8.3f}")
    # Runs next to each other share the machine's load of the moment: the
    # median of each round's own current/baseline ratio drifts less.
    for label in ("as shipped", "one worker"):
        for what, series in (("req/s", rates), ("CPU per request", cpu_us)):
            paired = [c / b for b, c in zip(series[f"baseline, {label}"], series[f"current, {label}"], strict=True)]
            print(f"{label}, {what}: median of the rounds' own ratios {statistics.median(paired):.3f}")
    if args.sequential:
        b, c = (statistics.median(sequential[side]) for side in ("baseline", "current"))
        paired = statistics.median(x / y for y, x in zip(sequential["baseline"], sequential["current"], strict=True))
        print(f"one worker, {args.sequential} sequential requests a round (CPU us per request): "
              f"baseline {b:.0f}, current {c:.0f}, median of the rounds' own ratios {paired:.3f}")
    print(f"baseline {ref} vs this checkout; rounds: " +
          "; ".join(f"{name}: {' '.join(f'{r:.0f}' for r in rs)}" for name, rs in rates.items()))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--log-level", default="WARNING")
    ap.add_argument("--baseline", help="a git ref or a checkout directory: compare this checkout with it instead")
    ap.add_argument("--sequential", type=int, default=0,
                    help="with --baseline: also CPU per request of this many sequential requests a round")
    args = ap.parse_args()
    if args.baseline:
        return against_baseline(args.baseline, args)
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
    print(f"GET /api/session at log level {args.log_level}, wrk {args.connections} connections, "
          f"median of {args.rounds} x {args.seconds}s")
    print(f"{'':<38}{'req/s':>9}{'ratio':>8}")
    for name, rate in best.items():
        print(f"{name:<38}{rate:>9.0f}{rate / baseline:>8.2f}")
    print(f"({SHIPPED_WORKERS} gateway workers as shipped on this machine)")
    print(f"target: appliance/baseline >= 0.60 -> {best['appliance as shipped'] / baseline:.2f}"
          f" (one gateway process: {best['gateway -> core, multiplexed'] / baseline:.2f})")


if __name__ == "__main__":
    main()
