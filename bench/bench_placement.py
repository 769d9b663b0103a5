"""What a placement decision costs as the fleet grows (issue 13: p99 <= 50 ms
at 1000 hosts and 30,000 containers).

In one run, on a real SQLite file and on a private real PostgreSQL server
(Debian's package, on a Unix socket; tests/pg_support.py), the core's own
``placement.choose_host`` is timed ``--decisions`` times (each a random
instance type) over:

- ``1 host``: the baseline, a host alone with 30 containers;
- ``N hosts``: ``--hosts`` simulated hosts (5 % drained, 5 % silent, so down)
  and ``--containers`` containers spread over them at random, every status.

Side by side, the floor each database sets: ``SELECT host rows`` (reading the
N host rows alone, no aggregate) and ``SELECT 1`` (a round trip).

    python -m bench bench_placement     # or: python -m bench.bench_placement --hosts 1000
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

STATUSES = ("running", "running", "running", "stopped", "error", "pending")


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p * (len(values) - 1))))]


def timed(fn: Callable[[], object], times: int) -> list[float]:
    """Milliseconds per call."""
    fn()  # warm: the first query plans and caches
    out = []
    for _ in range(times):
        began = time.perf_counter()
        fn()
        out.append((time.perf_counter() - began) * 1000)
    return out


def populate(hosts: int, containers: int, now: float, rng: random.Random) -> None:
    """``hosts`` host rows (host-0000 is "this" host) and ``containers`` rows on them."""
    from appliance.core.compute.models import Container
    from appliance.core.db import User, database
    from appliance.core.fleet.models import ACTIVE, DRAINED, Host

    with database.atomic():
        Container.delete().execute()
        Host.delete().execute()
        owners = [u.id for u in User.select(User.id)] or [
            User.create(public_id=f"u{i:05d}", username=f"user{i}", display_name="", password_hash="x").id
            for i in range(100)]
        rows = []
        for i in range(hosts):
            roll = rng.random() if i else 1.0
            rows.append({"name": f"host-{i:04d}", "guest_subnet": f"10.{i // 256}.{i % 256}.0/24",
                         "cpus": rng.choice((16.0, 32.0, 64.0)), "memory_mb": rng.choice((65536, 131072, 262144)),
                         "state": DRAINED if roll < 0.05 else ACTIVE,
                         "heartbeat_at": now - (7200 if 0.05 <= roll < 0.10 else rng.random())})
        for batch in range(0, len(rows), 500):
            Host.insert_many(rows[batch:batch + 500]).execute()
        rows = []
        for i in range(containers):
            cpus, memory = rng.choice(((0.5, 512), (1.0, 1024), (2.0, 2048), (4.0, 4096)))
            rows.append({"public_id": f"c{i:07d}", "owner": rng.choice(owners), "name": "box",
                         "status": rng.choice(STATUSES), "instance_type": "nano", "memory_mb": memory,
                         "cpus": cpus, "storage_gb": 5, "ip": f"10.{100 + i // 65536}.{i // 256 % 256}.{i % 256}",
                         "host": f"host-{rng.randrange(hosts):04d}"})
        for batch in range(0, len(rows), 500):
            Container.insert_many(rows[batch:batch + 500]).execute()
    if database.obj.__class__.__name__.startswith("Postgres"):
        database.execute_sql("VACUUM ANALYZE")   # what autovacuum does after a bulk load


def measure(url: str, label: str, args) -> list[tuple[str, str, float, float]]:
    from appliance.config import Config
    from appliance.core.compute import placement
    from appliance.core.db import database, open_database
    from appliance.core.fleet.models import Host

    open_database(url)
    rng = random.Random(13)
    # Silent for 2 h: down; the others beat "now" and stay alive for the whole run (no heartbeat loop here).
    config = Config(host_name="host-0000", host_dead_seconds=3600.0)
    requests = [rng.choice(((0.5, 512), (1.0, 1024), (2.0, 2048), (4.0, 4096))) for _ in range(args.decisions)]

    def decide() -> Callable[[], object]:
        it = iter(requests * 2)
        return lambda: placement.choose_host(config, *next(it))

    results = []
    populate(1, 30, time.time(), rng)
    single = timed(decide(), args.decisions)
    results.append((label, "choose_host, 1 host / 30 containers", statistics.median(single), pct(single, 0.99)))
    began = time.perf_counter()
    populate(args.hosts, args.containers, time.time(), rng)
    print(f"{label}: {args.hosts} hosts and {args.containers} containers written in "
          f"{time.perf_counter() - began:.1f} s", flush=True)
    fleet = timed(decide(), args.decisions)
    results.append((label, f"choose_host, {args.hosts} hosts / {args.containers} containers",
                    statistics.median(fleet), pct(fleet, 0.99)))
    rows = timed(lambda: list(Host.select()), args.decisions)
    results.append((label, f"SELECT {args.hosts} host rows", statistics.median(rows), pct(rows, 0.99)))
    trip = timed(lambda: database.execute_sql("SELECT 1").fetchall(), args.decisions)
    results.append((label, "SELECT 1", statistics.median(trip), pct(trip, 0.99)))
    database.close()
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--containers", type=int, default=30000)
    ap.add_argument("--decisions", type=int, default=300)
    args = ap.parse_args()
    import pg_support

    results = []
    with tempfile.TemporaryDirectory(prefix="bench-placement-") as tmp:
        results += measure(f"sqlite:///{tmp}/appliance.db", "SQLite", args)
    with pg_support.private_postgres(port=5498) as url:
        results += measure(url, "PostgreSQL", args)
    print(f"\n{'database':<11} {'what':<48} {'p50 ms':>8} {'p99 ms':>8}")
    for label, what, p50, p99 in results:
        print(f"{label:<11} {what:<48} {p50:8.2f} {p99:8.2f}")
    worst = max(p99 for _, what, _, p99 in results if what.startswith("choose_host") and "1 host" not in what)
    print(f"\nplacement p99 at {args.hosts} hosts: {worst:.1f} ms (target <= 50 ms): "
          f"{'OK' if worst <= 50 else 'OVER'}")


if __name__ == "__main__":
    main()
