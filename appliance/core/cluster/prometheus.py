"""The metrics sampler's latest Snapshot (readings.py) as Prometheus gauges.

A custom collector: read at each scrape from ``latest()`` (the sampler's
``Sampler.latest``), never stored in the multiprocess files, so a host or a
container that is gone leaves no stale series. Units per Prometheus
conventions: bytes, cores, ratios 0-1.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from appliance.core.cluster.readings import Snapshot

_CONTAINER_LABELS = ["id", "name", "owner"]


class SnapshotCollector(Collector):
    def __init__(self, latest: Callable[[], Snapshot | None]):
        self.latest = latest

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snapshot = self.latest()
        if snapshot is None:  # no sample yet: no gauges rather than zeros
            return
        h = snapshot.host
        host = [h.name]

        def host_gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(f"appliance_host_{name}", doc, labels=["host"])
            family.add_metric(host, value)
            return family

        yield host_gauge("sample_timestamp_seconds", "When the sampler took these readings (unix time).",
                         snapshot.timestamp)
        yield host_gauge("cpu_cores", "CPU cores of the host.", h.cpu_cores)
        yield host_gauge("cpu_utilization_ratio", "Share of all cores busy since the previous sample (0-1).",
                         h.cpu_percent / 100.0)
        yield host_gauge("memory_used_bytes", "Memory in use (total minus available).", h.memory_used_bytes)
        yield host_gauge("memory_total_bytes", "Memory of the host.", h.memory_total_bytes)
        yield host_gauge("disk_used_bytes", "Bytes used on the data disk.", h.disk_used_bytes)
        yield host_gauge("disk_total_bytes", "Size of the data disk.", h.disk_total_bytes)
        if h.pids_max:
            yield host_gauge("pids", "Processes (tasks) on the host.", h.pids)
            yield host_gauge("pids_max", "The host's limit on processes.", h.pids_max)

        families = {
            "cpu": GaugeMetricFamily("appliance_container_cpu_cores",
                                     "CPU the container used since the previous sample, in cores.",
                                     labels=_CONTAINER_LABELS),
            "mem": GaugeMetricFamily("appliance_container_memory_used_bytes", "The container's memory in use.",
                                     labels=_CONTAINER_LABELS),
            "mem_limit": GaugeMetricFamily("appliance_container_memory_limit_bytes", "The container's memory limit.",
                                           labels=_CONTAINER_LABELS),
            "disk": GaugeMetricFamily("appliance_container_disk_used_bytes", "Bytes used on the container's volume.",
                                      labels=_CONTAINER_LABELS),
            "disk_limit": GaugeMetricFamily("appliance_container_disk_limit_bytes", "Size of the container's volume.",
                                            labels=_CONTAINER_LABELS),
        }
        for g in snapshot.guests:
            labels = [g.id, g.name, g.owner_id]
            families["cpu"].add_metric(labels, g.cpu_nanocores / 1e9)
            families["mem"].add_metric(labels, g.memory_used_bytes)
            families["mem_limit"].add_metric(labels, g.memory_limit_bytes)
            families["disk"].add_metric(labels, g.disk_used_bytes)
            families["disk_limit"].add_metric(labels, g.disk_limit_bytes)
        yield from families.values()
