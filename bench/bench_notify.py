"""What carrying status events across hosts (PostgreSQL LISTEN/NOTIFY,
core/fleet/notify.py) costs, against the bus of a host alone (SQLite: local
subscribers only), in the same run.

One process, one event loop, a private PostgreSQL on a Unix socket. Two buses
stand for two hosts' cores: "A" publishes, "B" has one subscriber, each with
its own ``FleetEvents`` (own thread, own connection), as two cores have.

1. Caller's cost per publish (what the core's event loop pays): ``publish``
   on a bus alone (one local subscriber) vs on a bus with the relay (same
   subscriber + encode + queue for the NOTIFY thread).
2. Latency: events published one at a time (``--spaced``, 5 ms apart),
   publish -> arrival on B's subscriber: p50/p99.
3. Burst: ``--burst`` events back to back; time until B has them all
   (events/s) and the process's CPU per event (both hosts' sides, the
   threads included) vs the local bus's.

Needs root (the PostgreSQL cluster runs as the postgres user).

    python -m bench bench_notify        # or: python bench/bench_notify.py --burst 8000
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def _event(i: int):
    from appliance.v1 import compute_pb2
    return compute_pb2.ContainerStatus(container_id=f"c{i % 100000:05d}", status="running",
                                       external_ip=f"10.217.0.{i % 250 + 2}")


def _publish_ns(bus, n: int) -> float:
    events = [_event(i) for i in range(n)]
    began = time.perf_counter_ns()
    for event in events:
        bus.publish("user", event)
    return (time.perf_counter_ns() - began) / n


async def _drain(sub, n: int) -> None:
    for _ in range(n):
        await sub.queue.get()


async def run(url: str, spaced: int, burst: int) -> None:
    from playhouse.db_url import connect

    from appliance.core.events import Bus
    from appliance.core.fleet.notify import FleetEvents
    from appliance.v1 import compute_pb2

    alone, a, b = Bus(), Bus(), Bus()
    fleet_a = FleetEvents(connect(url), "A", a, compute_pb2.ContainerStatus)
    fleet_b = FleetEvents(connect(url), "B", b, compute_pb2.ContainerStatus)
    try:
        await fleet_a.start()
        await fleet_b.start()
        for fleet in (fleet_a, fleet_b):
            while not fleet.connected.is_set():
                await asyncio.sleep(0.01)
        local_sub = alone.subscribe("user", maxsize=burst + 10)
        a_sub = a.subscribe("user", maxsize=burst + 10)   # A's own subscriber: same local work as alone
        b_sub = b.subscribe("user", maxsize=burst + 10)

        # 1. the caller's cost (the loop does not run meanwhile: the NOTIFY thread does)
        n, local, relay = 5000, [], []   # n under notify.MAX_OUTBOX: nothing is dropped
        for _ in range(3):
            local.append(_publish_ns(alone, n))
            relay.append(_publish_ns(a, n))
            await _drain(b_sub, n)
            for sub in (local_sub, a_sub):
                while not sub.queue.empty():
                    sub.queue.get_nowait()
        local_ns, relay_ns = min(local), min(relay)
        a_sub.close()
        print(f"publish, caller's cost:   local bus {local_ns / 1000:.2f} us   with NOTIFY relay "
              f"{relay_ns / 1000:.2f} us   ({relay_ns / local_ns:.1f}x)")

        # 2. latency, one event at a time
        lat = []
        for i in range(spaced):
            began = time.perf_counter()
            a.publish("user", _event(i))
            await b_sub.queue.get()
            lat.append(time.perf_counter() - began)
            await asyncio.sleep(0.005)
        q = statistics.quantiles(lat, n=100)
        print(f"publish on A -> B's subscriber ({spaced} events, 5 ms apart): "
              f"p50 {q[49] * 1000:.2f} ms  p99 {q[98] * 1000:.2f} ms")

        # 3. burst: throughput and CPU per event
        cpu, began = time.process_time(), time.perf_counter()
        for i in range(burst):
            alone.publish("user", _event(i))
        await _drain(local_sub, burst)
        local_cpu = (time.process_time() - cpu) / burst
        cpu, began = time.process_time(), time.perf_counter()
        for i in range(burst):
            a.publish("user", _event(i))
        await _drain(b_sub, burst)
        wall = time.perf_counter() - began
        fleet_cpu = (time.process_time() - cpu) / burst
        print(f"burst of {burst}: all on B after {wall:.2f} s ({burst / wall:,.0f} events/s); "
              f"CPU per event {fleet_cpu * 1e6:.1f} us (both hosts' sides) vs local bus "
              f"{local_cpu * 1e6:.1f} us ({fleet_cpu / local_cpu:.0f}x)")
    finally:
        fleet_a.close()
        fleet_b.close()


def main() -> None:
    import pg_support

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--spaced", type=int, default=300)
    p.add_argument("--burst", type=int, default=8000, help="at most notify.MAX_OUTBOX")
    args = p.parse_args()
    with pg_support.private_postgres() as url:
        asyncio.run(run(url, args.spaced, args.burst))


if __name__ == "__main__":
    main()
