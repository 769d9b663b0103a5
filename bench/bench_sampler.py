"""What the metrics sampler costs, and what a week of its history takes.

1. CPU: real LXC guests (``--guests``, default 30; 64 MiB, 0.1 CPU, 1 GB
   each) on a bridge of their own, a SQLite database with a container row
   per guest, and the core's ``Sampler`` taking ``--samples`` samples back to
   back. Its CPU time is the sampling thread's own (``thread_time``: the
   /proc and cgroup reads, the volume statvfs, the DB read of the container
   rows and the history write); as a share of one core at the default
   interval of 5 s. Side by side, in the same run and on the same guests:
   - ``host only``: the sampler with no containers (the floor);
   - ``libvirt per guest``: what reading the same guests through libvirt
     each time would cost (lookup + isActive + info: the driver's usage()
     before it kept the cgroup files);
   - ``3 hosts``: three samplers with three host names, each reading a third
     of the guests and writing its own history (multi-host is a later issue:
     this is three samplers on one machine into one database, the central
     database's share of a three-host cluster).
2. History size: a simulated week of one host's samples through the real
   ``history.record`` and the sampler's pruning every minute, into a fresh
   SQLite file; the file's size after each day, against the empty
   database's. One sample a minute, except one every 5 s in the last 2 h of each day:
   every bucket level gets exactly the rows 5 s samples give it, and raw
   rows live 2 h only (a full 120,960-sample week takes ~10 min of CPU here
   for the same rows). ``synchronous=OFF`` for the simulation only (the
   file's size does not depend on it).

Needs root, libvirt and the guest image.

    python -m bench bench_sampler          # or: python bench/bench_sampler.py --guests 30
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

BRIDGE, SUBNET = "apbenchm0", "10.237.0.0/24"
INTERVAL = 5.0


def _rows_for(ids: list[str]):
    """A sampler ``_rows`` that returns only these guests' rows (one of three hosts)."""
    from appliance.core.cluster.sampler import Sampler

    def rows(self, host_name):
        return [r for r in Sampler._rows(host_name) if r.public_id in ids]
    return rows


def libvirtd_cpu_ms() -> float:
    """CPU time libvirtd has used (user + system), ms."""
    from appliance.host.libvirtd import libvirtd_pid

    pid = libvirtd_pid()
    if pid is None:
        return 0.0
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def cpu_per_sample_ms(sampler, samples: int) -> tuple[float, float]:
    """(the sampler thread's CPU ms, libvirtd's CPU ms) per sample."""
    sampler.sample()   # first reading: finds the cgroup files, warms caches
    before, daemon = sampler.busy_ns, libvirtd_cpu_ms()
    for _ in range(samples):
        sampler.sample()
    return (sampler.busy_ns - before) / samples / 1e6, (libvirtd_cpu_ms() - daemon) / samples


def libvirt_usage_ms(driver, ids: list[str], samples: int) -> tuple[float, float]:
    """The per-guest libvirt reading (the driver's usage() before it kept the
    cgroup files: lookup, isActive, info, then the volume): (this thread's
    CPU ms, libvirtd's CPU ms) per round over every guest."""
    started, daemon = time.thread_time_ns(), libvirtd_cpu_ms()
    for _ in range(samples):
        for guest_id in ids:
            driver.volumes.exists(guest_id)
            dom = driver._domain(guest_id)
            dom.info()
            driver.volumes.usage(guest_id)
    return (time.thread_time_ns() - started) / samples / 1e6, (libvirtd_cpu_ms() - daemon) / samples


def cgroup_usage_ms(driver, ids: list[str], samples: int) -> float:
    """The same guests through usage() as it is now (cgroup files), this thread's CPU ms per round."""
    started = time.thread_time_ns()
    for _ in range(samples):
        for guest_id in ids:
            driver.usage(guest_id)
    return (time.thread_time_ns() - started) / samples / 1e6


def week_of_history(path: Path, hosts: int = 1, days: int = 7) -> list[tuple[int, int]]:
    """(day, DB file bytes) after each simulated day; day 0: the empty schema."""
    from appliance.core import db
    from appliance.core.cluster import history

    database = db.open_database(f"sqlite:///{path}")
    database.execute_sql("PRAGMA synchronous=OFF")

    def size() -> int:
        database.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        return path.stat().st_size

    sizes = [(0, size())]
    t0 = 1_767_225_600.0
    raw_kept = history.RETENTION[history.RAW]
    last_prune = -1e18
    for day in range(1, days + 1):
        t, day_end = t0 + (day - 1) * 86400, t0 + day * 86400
        while t < day_end:
            for h in range(hosts):
                history.record(f"host-{h}", t, 12.5, 40.0, 60.0)
            if t - last_prune >= 60:
                for h in range(hosts):
                    history.prune(f"host-{h}", t)
                last_prune = t
            # one sample a minute fills every bucket level as 5 s samples would (raw rows
            # live 2 h only): 5 s steps for the 2 h before each day's end, so raw is full
            # too when the file is measured
            t += INTERVAL if t >= day_end - raw_kept else 60.0
        sizes.append((day, size()))
    db.database.close()
    return sizes


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--guests", type=int, default=30)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--days", type=int, default=9, help="simulated days of history (0: skip)")
    parser.add_argument("--guests-only", action="store_true", help="only the CPU part (needs the guests)")
    parser.add_argument("--history-only", action="store_true", help="only the history part (no guests)")
    args = parser.parse_args(argv)
    if not args.history_only:
        sampler_cpu(args)
    if not args.guests_only and args.days > 0:
        history_size(args)


def sampler_cpu(args) -> None:

    from guest_support import lxc_driver

    from appliance.config import Config
    from appliance.core import db
    from appliance.core.cluster.sampler import Sampler
    from appliance.core.compute.models import RUNNING, Container
    from appliance.core.db import User
    from appliance.drivers.base import GuestSpec

    with tempfile.TemporaryDirectory(prefix="bench-sampler-") as tmp:
        with lxc_driver(Path(tmp, "guests"), BRIDGE, SUBNET) as driver:
            db.open_database(f"sqlite:///{tmp}/appliance.db")
            owner = User.create(public_id="Bench1", username="bench", display_name="bench", password_hash="x")
            ids = []
            started = time.monotonic()
            for n in range(args.guests):
                spec = GuestSpec(id=f"bs{n:02d}{os.getpid() % 10000:04d}", ip=f"10.237.0.{10 + n}",
                                 memory_mb=64, cpus=0.1, storage_gb=1)
                driver.spawn(spec)
                ids.append(spec.id)
                Container.create(public_id=spec.id, owner=owner, name=f"g{n}", status=RUNNING, instance_type="nano",
                                 memory_mb=64, cpus=0.1, storage_gb=1, ip=spec.ip, provisioned=True)
            print(f"{len(ids)} real LXC guests started in {time.monotonic() - started:.0f}s", flush=True)
            config = Config(data_dir=tmp, host_name="bench-host")

            host_only = Sampler(config, driver)
            host_only._rows = lambda host_name: []   # type: ignore[method-assign]
            floor = cpu_per_sample_ms(host_only, args.samples)
            one = Sampler(config, driver)
            full = cpu_per_sample_ms(one, args.samples)
            with_guests = one.latest()
            assert with_guests is not None and len(with_guests.guests) == len(ids)
            assert all(g.cpu_ns > 0 and g.memory_used_bytes > 0 for g in with_guests.guests)
            now_reads = cgroup_usage_ms(driver, ids, args.samples)
            via_libvirt = libvirt_usage_ms(driver, ids, args.samples)
            thirds = [ids[i::3] for i in range(3)]
            samplers = []
            for h, part in enumerate(thirds):
                s = Sampler(config.replace(host_name=f"bench-host-{h}"), driver)
                s._rows = _rows_for(part).__get__(s)   # type: ignore[method-assign]
                samplers.append(s)
            per_host = [cpu_per_sample_ms(s, args.samples) for s in samplers]
            three = (sum(p[0] for p in per_host), sum(p[1] for p in per_host))
            rounds = []
            for _ in range(args.samples):
                t = time.perf_counter()
                one.sample()
                rounds.append(time.perf_counter() - t)
            with_libvirt = (full[0] - now_reads + via_libvirt[0], full[1] + via_libvirt[1])

    def pct(ms: tuple[float, float]) -> str:
        own, daemon = ms
        return (f"{own:6.2f} ms + libvirtd {daemon:5.2f} ms CPU a sample = "
                f"{100 * (own + daemon) / 1000 / INTERVAL:5.2f} % of one core at {INTERVAL:.0f} s")

    n = len(ids)
    print(f"\nsampler CPU (its thread + libvirtd's, mean of {args.samples} samples), {n} real guests:")
    print(f"  host only (no containers)                 {pct(floor)}")
    print(f"  1 host x {n} containers                    {pct(full)}")
    print(f"  baseline: the same with libvirt per guest {pct(with_libvirt)}")
    print(f"  3 hosts x {n // 3} containers (3 samplers)     {pct(three)}")
    print(f"  guest readings alone: cgroup files {1000 * now_reads / n:.0f} us a guest, via libvirt "
          f"{1000 * sum(via_libvirt) / n:.0f} us (incl. libvirtd)")
    print(f"  wall time of one sample, 1 host x {n}: median {1000 * statistics.median(rounds):.1f} ms")

def history_size(args) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp:
        started = time.monotonic()
        sizes = week_of_history(Path(tmp, "history.db"), days=args.days)
        took = time.monotonic() - started
    empty = sizes[0][1]
    print(f"\nhistory, one host, a sample every {INTERVAL:.0f} s ({args.days} simulated days in {took:.0f}s):")
    for day, size in sizes:
        print(f"  day {day}: DB file {size:>9,} bytes ({size - empty:>9,} over the empty schema)")
    week = sizes[min(7, len(sizes) - 1)]
    print(f"  {week[0]} days of history: {week[1] - empty:,} bytes for one host = "
          f"{(week[1] - empty) / max(1, week[0]):,.0f} bytes per host per day; the file stops growing once the"
          f" 8 days of 15 min buckets are full (day {sizes[-1][0]}: {sizes[-1][1] - empty:,} bytes)")


if __name__ == "__main__":
    main()
