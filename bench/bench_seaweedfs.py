"""Files on SeaweedFS: 1 GiB up and down through the appliance vs straight to
SeaweedFS's filer and to its S3 gateway, and through the appliance on local
disk, one run (issue 14).

Two real SeaweedFS sets (``weed`` 4.48, every process bound to loopback on
free ports, GOMEMLIMIT set, a filer JWT key as the appliance uses it): one
volume server with replication 000, and three volume servers on three racks
with replication 010 (every chunk written twice, on two servers). For each,
measured with curl (a real HTTP client, body from a file or to /dev/null):

- filer: ``PUT`` of the file to the filer's HTTP API (with the appliance's
  query: collection, replication, fsync) and ``GET`` of it, JWT in the header;
- S3: ``weed s3`` over the same filer, ``PUT``/``GET`` object signed with
  curl's ``--aws-sigv4`` (one request each way, like the others);
- appliance: a real core + gateway (tests/harness.py) with
  ``storage_backend = seaweedfs`` on that set: raw ``PUT /storage/...`` and
  ``GET``;
- the appliance on local disk (the same build, storage_backend local), so
  the cost of SeaweedFS and of replication is visible;
- ``appliance storage migrate --to seaweedfs --final`` of that local
  appliance's files (the 1 GiB files written above) into a fresh 000 set;
- peak RSS of every appliance process and every weed process, sampled every
  20 ms throughout.

Every write goes to a new name; ``sync`` before each timed transfer.
Targets (issue 14): appliance >= 0.8 x direct (filer) both ways; appliance
processes' RSS < 150 MB.

    python -m bench.bench_seaweedfs [--size-mb 1024] [--dir /var/tmp] [--repeat 2] [--only direct]
"""
from __future__ import annotations

import argparse
import itertools
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from harness import Appliance  # noqa: E402

from bench.bench_storage import MB, curl, make_source, processes  # noqa: E402
from bench.seaweed_set import S3_KEY, S3_SECRET, Watch, bench_set  # noqa: E402


def filer_runs(sw, s3_url: str, src: Path, fresh, replication: str) -> dict:
    auth = ["-H", f"Authorization: Bearer {sw.token(7200)}"]
    query = f"?collection=bench&fsync=true&replication={replication}"
    path = f"{sw.filer_url}/bench/src.bin"
    curl("-X", "PUT", *auth, "-T", str(src), path + query)  # what GET reads
    s3 = ["--aws-sigv4", "aws:amz:us-east-1:s3", "--user", f"{S3_KEY}:{S3_SECRET}"]
    curl(*s3, "-X", "PUT", f"{s3_url}/bench")
    curl(*s3, "-T", str(src), f"{s3_url}/bench/src.bin")
    return {
        "filer up": lambda: curl("-X", "PUT", *auth, "-T", str(src), f"{sw.filer_url}/bench/{next(fresh)}{query}"),
        "filer up, no fsync": lambda: curl("-X", "PUT", *auth, "-T", str(src),
                                           f"{sw.filer_url}/bench/{next(fresh)}{query.replace('true', 'false')}"),
        "filer down": lambda: curl(*auth, path),
        "S3 up": lambda: curl(*s3, "-T", str(src), f"{s3_url}/bench/{next(fresh)}"),
        "S3 down": lambda: curl(*s3, f"{s3_url}/bench/src.bin"),
    }


def appliance_runs(app: Appliance, src: Path, fresh) -> dict:
    auth = ["-H", f"Authorization: Bearer {app.admin().token}"]
    curl(*auth, "-T", str(src), f"{app.url}/storage/default/src.bin")
    return {
        "appliance up": lambda: curl(*auth, "-T", str(src), f"{app.url}/storage/default/{next(fresh)}"),
        "appliance down": lambda: curl(*auth, f"{app.url}/storage/default/src.bin"),
    }


def migrate_rate(app: Appliance, root: Path) -> float:
    """MB/s of `appliance storage migrate --to seaweedfs` copying the appliance's files into a new set."""
    with bench_set(root, 1, "000") as (sw, _, _):
        env = {**app.env, "APPLIANCE_SEAWEEDFS_EMBEDDED": "false", "APPLIANCE_SEAWEEDFS_FILER": sw.filer_url,
               "APPLIANCE_SEAWEEDFS_MASTER": sw.master_address, "APPLIANCE_SEAWEEDFS_REPLICATION": "000",
               "APPLIANCE_SEAWEEDFS_JWT_KEY_FILE": str(sw.jwt_key_file)}
        os.sync()
        out = subprocess.run([sys.executable, "-m", "appliance.cli", "storage", "migrate", "--to", "seaweedfs",
                              "--final"], env=env, cwd=app.data_dir.parent, capture_output=True, text=True,
                             timeout=1800)
    found = re.search(r"copied now \(([\d.]+) MB in ([\d.]+) s\)", out.stdout)
    if out.returncode != 0 or found is None:
        raise RuntimeError(f"storage migrate failed: {out.stdout[-2000:]} {out.stderr[-2000:]}")
    print(f"  ... migrate: {found.group(0)}", file=sys.stderr, flush=True)
    return float(found.group(1)) / float(found.group(2))


def start_appliance(base: Path, size: int, **settings) -> Appliance:
    return Appliance(base, log_level="WARNING", storage_quota_bytes=1 << 40, max_upload_bytes=max(size, 4 << 30),
                     **settings).start()


def timed(runs: dict, repeat: int, times: dict, watch: Watch, size: int) -> None:
    for _ in range(repeat):  # interleaved, so drift hits baseline and appliance alike
        for kind, run in runs.items():
            times.setdefault(kind, []).append(run())
            watch.sample()
            print(f"  ... {kind}: {size / times[kind][-1] / MB:.0f} MB/s", file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=1024, help="file size in MiB (default 1024 = 1 GiB)")
    ap.add_argument("--dir", default="/var/tmp", help="where the temporary tree goes (one disk)")
    ap.add_argument("--repeat", type=int, default=2, help="interleaved rounds; the best run of each is kept")
    ap.add_argument("--only", choices=["direct"], help="direct: SeaweedFS alone, no appliance")
    args = ap.parse_args()
    size = args.size_mb << 20
    base = Path(tempfile.mkdtemp(prefix="bench-seaweedfs-", dir=args.dir))
    fresh = (f"w{i}.bin" for i in itertools.count())
    results: dict[str, dict[str, float]] = {}
    rounds: dict[str, dict[str, list[float]]] = {}
    peaks: dict[str, dict[str, int]] = {}
    try:
        src = base / "src.bin"
        make_source(src, size)
        for label, servers, replication in (("000, 1 volume server", 1, "000"), ("010, 3 volume servers", 3, "010")):
            times: dict[str, list[float]] = {}
            with bench_set(base / f"sw{servers}", servers, replication) as (sw, s3_url, pids), Watch() as watch:
                watch.add("weed", lambda pids=pids: pids)
                runs = filer_runs(sw, s3_url, src, fresh, replication)
                app = None
                try:
                    if args.only != "direct":
                        app = start_appliance(base / f"app{servers}", size, storage_backend="seaweedfs",
                                              seaweedfs_embedded="false", seaweedfs_filer=sw.filer_url,
                                              seaweedfs_master=sw.master_address, seaweedfs_replication=replication,
                                              seaweedfs_jwt_key_file=str(sw.jwt_key_file))
                        watch.add("appliance", lambda app=app: processes(app))
                        runs.update(appliance_runs(app, src, fresh))
                    timed(runs, args.repeat, times, watch, size)
                finally:
                    if app is not None:
                        app.close()
            results[label] = {k: size / min(v) / MB for k, v in times.items()}
            rounds[label] = paired_ratios(times)
            peaks[label] = watch.peak
        if args.only != "direct":
            times = {}
            app = start_appliance(base / "app-local", size)
            try:
                with Watch() as watch:
                    watch.add("appliance", lambda: processes(app))
                    timed(appliance_runs(app, src, fresh), args.repeat, times, watch, size)
                app.stop("core")   # the switch's final pass: everything it holds, into a fresh 000 set
                results["local disk"] = {k: size / min(v) / MB for k, v in times.items()}
                results["local disk"]["migrate"] = migrate_rate(app, base / "sw-migrate")
            finally:
                app.close()
            peaks["local disk"] = watch.peak
    finally:
        shutil.rmtree(base, ignore_errors=True)
    report(args, results, peaks, rounds)


def paired_ratios(times: dict[str, list[float]]) -> dict[str, list[float]]:
    """appliance / filer per round (the two measured one after the other): on a
    noisy machine their median says more than two best-ofs taken apart."""
    return {way: [f / a for f, a in zip(times[f"filer {way}"], times[f"appliance {way}"], strict=False)]
            for way in ("up", "down") if f"appliance {way}" in times}


def report(args, results: dict, peaks: dict, rounds: dict | None = None) -> None:
    print(f"SeaweedFS benchmark: {args.size_mb} MiB file, best of {args.repeat} interleaved rounds, dir {args.dir}")
    print(f"{'':<46}{'MB/s':>8}{'ratio':>9}")
    local = results.get("local disk", {})
    for label, rates in results.items():
        print(f"{label}:")
        for way in ("up", "down"):
            filer = rates.get(f"filer {way}")
            for key in (f"filer {way}", "filer up, no fsync" if way == "up" else "", f"S3 {way}", f"appliance {way}"):
                rate = rates.get(key)
                if rate is None:
                    continue
                note = ""
                if key.startswith(("S3", "filer up, no")) and filer:
                    note = f"{rate / filer:>9.2f}  x filer"
                elif key.startswith("appliance") and filer:
                    note = f"{rate / filer:>9.2f}  x filer (target >= 0.8)"
                    if local.get(key):
                        note += f", {rate / local[key]:.2f} x appliance on local disk"
                print(f"  {key:<44}{rate:>8.0f}{note}")
    for label, ways in (rounds or {}).items():
        print(f"{label}, appliance / filer per round: " + "; ".join(
            f"{way} " + " ".join(f"{r:.2f}" for r in ratios) + f" (median {statistics.median(ratios):.2f})"
            for way, ratios in ways.items()))
    if "migrate" in local:
        print(f"  {'storage migrate (local disk -> filer, 000)':<44}{local['migrate']:>8.0f}")
    print("peak RSS, MB (sampled every 20 ms; appliance target < 150):")
    for label, peak in peaks.items():
        print(f"  {label}: " + ", ".join(f"{name} {kb / 1024:.0f}" for name, kb in sorted(peak.items())))


if __name__ == "__main__":
    main()
