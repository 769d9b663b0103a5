"""`appliance cp` (the user's client, docs/cli.md) vs curl, 1 GiB up and down, one run.

Both move the same file through the same endpoints of one appliance (local disk):
upload `PUT /storage/{ns}/{name}` with the body streamed from the file (curl -T), download
`GET /storage/download/{ns}/{name}` of one stored file per round into a file on the same disk (curl -o). Every timed
transfer starts after a `sync` outside the timing and writes a new name (nothing is
deleted until the end: see bench_storage.py on deletes stalling later writes); the two
clients alternate, curl first in odd rounds. The client's figures include its start-up
(a person runs the command).

Target (issue 17): appliance cp >= 0.9 x curl, both ways.

    python -m bench.bench_cli [--size-mb 1024] [--dir /var/tmp] [--repeat 2] [--client PATH]...

``--client`` runs another installed ``appliance`` (e.g. a pip-installed one in a venv of its own,
as a user has it, without the editable install's import hook of ``make venv``); given several
times, each client takes its turn in every round (before/after comparisons in one run).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from harness import Appliance  # noqa: E402

MIB = 1 << 20
CLIENT = str(Path(sys.executable).parent / "appliance")


CPU: dict[str, list[float]] = {}


def _timed(argv: list[str], env: dict | None = None, label: str = "") -> float:
    """Wall seconds of one run; its CPU seconds (user + system) go to CPU[label]."""
    subprocess.run(["sync"], check=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    r = subprocess.run(argv, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({r.returncode}): {r.stderr.strip()}")
    CPU.setdefault(label, []).append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size-mb", type=int, default=1024, help="file size in MiB (default 1024)")
    p.add_argument("--dir", default="/var/tmp", help="where the appliance's data and the files live")
    p.add_argument("--repeat", type=int, default=2, help="rounds (default 2)")
    p.add_argument("--client", action="append", help="an appliance command to run (default: this venv's); "
                                                     "repeated: each one in turn, in the same rounds")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench-cli-") as tmp:
        root = Path(tmp)
        # Every round stores one more copy per contestant (nothing is deleted until the end): room for them all.
        app = Appliance(root / "app", guest_driver="fake",
                        storage_quota_bytes=(len(args.client or [CLIENT]) + 2) * (args.repeat + 1) * args.size_mb * MIB)
        app.start()
        try:
            _run(app, root, args)
        finally:
            app.close()


def _run(app: Appliance, root: Path, args) -> None:
    clients = args.client or [CLIENT]
    names = ["appliance cp"] if len(clients) == 1 else [f"cp #{i + 1}" for i in range(len(clients))]
    env = {**os.environ, "APPLIANCE_CLIENT_CONFIG": str(root / "client.json")}
    # As a pip-installed client runs: with its modules' bytecode written (once, by the login below),
    # not compiled again at every start as PYTHONDONTWRITEBYTECODE=1 in a test environment would.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    for client in clients:
        subprocess.run([client, "login", app.url, "-u", "admin", "--password-stdin"], env=env, check=True,
                       input=app.admin_password + "\n", text=True, capture_output=True)
        subprocess.run([client, "cp", "--help"], env=env, check=True, capture_output=True)   # transfer.py's bytecode
    subprocess.run([clients[0], "ns", "create", "bench"], env=env, check=True, capture_output=True)
    token = json.loads((root / "client.json").read_text())["remotes"]["127.0.0.1"]["token"]
    auth = ["-H", f"Authorization: Bearer {token}"]
    src = root / "source.bin"
    with open(src, "wb") as f:
        for _ in range(args.size_mb):
            f.write(os.urandom(MIB))
    size = src.stat().st_size
    who_all = ["curl", *names]
    times: dict[str, list[float]] = {f"{who} {way}": [] for way in ("up", "down") for who in who_all}
    for round_ in range(args.repeat):
        order = who_all if round_ % 2 == 0 else who_all[::-1]
        for who in order:
            name, label = f"{who.replace(' ', '')}-{round_}", f"{who} up"
            if who == "curl":
                argv = ["curl", "-sSf", "-o", "/dev/null", *auth, "-H", f"X-File-Size: {size}", "-T", str(src),
                        f"{app.url}/storage/bench/{name}?overwrite=true"]
            else:
                argv = [clients[names.index(who)], "cp", "-q", str(src), f"bench/{name}"]
            times[label].append(_timed(argv, env, label))
        # Every client downloads the same stored file, the one curl uploaded this round: files
        # stored from different uploads downloaded up to 0.3 s/GiB apart whoever fetched them.
        name = f"curl-{round_}"
        for who in order:
            label, out = f"{who} down", root / f"down-{who.replace(' ', '')}-{round_}"
            if who == "curl":
                argv = ["curl", "-sSf", *auth, "-o", str(out), f"{app.url}/storage/download/bench/{name}"]
            else:
                argv = [clients[names.index(who)], "cp", "-q", f"bench/{name}", str(out)]
            times[label].append(_timed(argv, env, label))
            if out.stat().st_size != size:
                raise SystemExit(f"{out} has {out.stat().st_size} bytes, not {size}")
    rate = {k: size / MIB / statistics.median(v) for k, v in times.items()}
    best = {k: size / MIB / min(v) for k, v in times.items()}
    print(f"{args.size_mb} MiB, {args.repeat} rounds (median; best in brackets), MiB/s; target >= 0.9 x curl:")
    for client, who in zip(clients, names, strict=True):
        if len(clients) > 1:
            print(f"  {who}: {client}")
    for way in ("up", "down"):
        curl = f"curl {way}"
        print(f"  {way:<5} curl {rate[curl]:7.1f} [{best[curl]:.1f}]" + "".join(
            f"   {who} {rate[f'{who} {way}']:7.1f} [{best[f'{who} {way}']:.1f}] ratio "
            f"{rate[f'{who} {way}'] / rate[curl]:.2f} [{best[f'{who} {way}'] / best[curl]:.2f}]" for who in names))
    print("  CPU seconds (user + system, median): "
          + "; ".join(f"{k} {statistics.median(v):.2f}" for k, v in CPU.items()))
    print("  CPU seconds per round: " + "; ".join(f"{k} " + " ".join(f"{t:.2f}" for t in v) for k, v in CPU.items()))
    print("  seconds per round: " + "; ".join(f"{k} " + " ".join(f"{t:.2f}" for t in v) for k, v in times.items()))


if __name__ == "__main__":
    main()
