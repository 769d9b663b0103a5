"""The health stream's events (``GET /sse/health``) from the sampler's
snapshots: a ``cluster`` event (one node per host) and a ``pods`` event
(one pod per container the caller may see), typed as API.md says.

Pressure conditions use kubelet's default eviction thresholds: memory
available < 100 MiB, data disk available < 10 %, and (kubelet has no default)
processes/threads > 90 % of pid_max. A host whose last snapshot is older than
``STALE_INTERVALS`` sample intervals stopped answering: its conditions are
``Unknown`` (its last figures are kept).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

from appliance.core.cluster.readings import GuestReading, HostReading, Snapshot
from appliance.v1 import cluster_pb2

STALE_INTERVALS = 3
MEMORY_PRESSURE_AVAILABLE_BYTES = 100 << 20
DISK_PRESSURE_AVAILABLE_FRACTION = 0.10
PID_PRESSURE_USED_FRACTION = 0.90
CONDITIONS = ("MemoryPressure", "DiskPressure", "PIDPressure")


def pressures(host: HostReading) -> dict[str, bool]:
    return {
        "MemoryPressure": host.memory_total_bytes > 0
        and host.memory_available_bytes < MEMORY_PRESSURE_AVAILABLE_BYTES,
        "DiskPressure": host.disk_total_bytes > 0
        and host.disk_available_bytes < DISK_PRESSURE_AVAILABLE_FRACTION * host.disk_total_bytes,
        "PIDPressure": host.pids_max > 0 and host.pids > PID_PRESSURE_USED_FRACTION * host.pids_max,
    }


def is_stale(snapshot: Snapshot, now: float, interval: float) -> bool:
    return now - snapshot.timestamp > STALE_INTERVALS * interval


def node(snapshot: Snapshot, now: float, interval: float) -> cluster_pb2.Node:
    h = snapshot.host
    stale = is_stale(snapshot, now, interval)
    flags = pressures(h)
    return cluster_pb2.Node(
        name=h.name,
        cpu_usage=f"{h.cpu_nanocores}n",
        cpu_capacity=str(h.cpu_cores),
        memory_usage=f"{h.memory_used_bytes // 1024}Ki",
        memory_capacity=f"{h.memory_total_bytes // 1024}Ki",
        cpu_percent=round(h.cpu_percent, 2),
        memory_percent=round(h.memory_percent, 2),
        disk_percent=round(h.disk_percent, 2),
        disk_usage=h.disk_used_bytes,
        disk_capacity=h.disk_total_bytes,
        conditions=[cluster_pb2.NodeCondition(type=c, status="Unknown" if stale else str(flags[c]))
                    for c in CONDITIONS],
    )


def cluster_event(snapshots: Iterable[Snapshot], now: float, interval: float) -> cluster_pb2.HealthEvent:
    nodes = [node(s, now, interval) for s in sorted(snapshots, key=lambda s: s.host.name)]
    return cluster_pb2.HealthEvent(type="cluster", payload=cluster_pb2.HealthPayload(
        cluster=cluster_pb2.ClusterHealth(timestamp=int(now), nodes=nodes)))


def pod(snapshot: Snapshot, guest: GuestReading) -> cluster_pb2.Pod:
    return cluster_pb2.Pod(
        name=guest.name, namespace=f"compute-{guest.owner_id}", node=snapshot.host.name,
        cpu_usage=guest.cpu_nanocores, cpu_capacity=snapshot.host.cpu_cores * 1_000_000_000,
        memory_usage=guest.memory_used_bytes, memory_capacity=guest.memory_limit_bytes,
        disk_usage=guest.disk_used_bytes, disk_capacity=guest.disk_limit_bytes)


def pods_event(snapshots: Iterable[Snapshot], now: float,
               visible: Callable[[GuestReading], bool]) -> cluster_pb2.HealthEvent:
    pods = [pod(s, g) for s in sorted(snapshots, key=lambda s: s.host.name) for g in s.guests if visible(g)]
    return cluster_pb2.HealthEvent(type="pods", payload=cluster_pb2.HealthPayload(
        pods=cluster_pb2.PodsHealth(timestamp=int(now), pods=pods)))
