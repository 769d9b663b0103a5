"""The sampler's Snapshot as Prometheus gauges (core/cluster/prometheus.py), and
the multiprocess directory's housekeeping (appliance/metricsdir.py)."""
from __future__ import annotations

import os
import subprocess

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from appliance import metricsdir
from appliance.core.cluster.prometheus import SnapshotCollector
from appliance.core.cluster.readings import GuestReading, HostReading, Snapshot

SNAPSHOT = Snapshot(
    timestamp=1_790_000_000.5,
    host=HostReading(name="node-a", cpu_cores=8, cpu_percent=37.5, memory_used_bytes=3 << 30,
                     memory_total_bytes=16 << 30, disk_used_bytes=40 << 30, disk_total_bytes=100 << 30,
                     pids=312, pids_max=4_194_304),
    guests=[
        GuestReading(id="abcd1234", name="web", owner_id="u-1", state="running", cpu_nanocores=1_500_000_000,
                     memory_used_bytes=200 << 20, memory_limit_bytes=512 << 20, disk_used_bytes=1 << 30,
                     disk_limit_bytes=5 << 30),
        GuestReading(id="efgh5678", name='quote " and \\ back', owner_id="u-2", state="stopped",
                     cpu_nanocores=0, memory_used_bytes=0, memory_limit_bytes=1 << 30, disk_used_bytes=7,
                     disk_limit_bytes=10 << 30),
    ])


def exposition(latest) -> dict:
    registry = CollectorRegistry()
    registry.register(SnapshotCollector(latest))
    text = generate_latest(registry).decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_a_snapshot_becomes_host_and_container_gauges():
    found = exposition(lambda: SNAPSHOT)
    host = frozenset({("host", "node-a")})
    assert found[("appliance_host_cpu_cores", host)] == 8
    assert found[("appliance_host_cpu_utilization_ratio", host)] == 0.375
    assert found[("appliance_host_memory_used_bytes", host)] == 3 << 30
    assert found[("appliance_host_memory_total_bytes", host)] == 16 << 30
    assert found[("appliance_host_disk_used_bytes", host)] == 40 << 30
    assert found[("appliance_host_disk_total_bytes", host)] == 100 << 30
    assert found[("appliance_host_pids", host)] == 312
    assert found[("appliance_host_sample_timestamp_seconds", host)] == 1_790_000_000.5
    web = frozenset({("id", "abcd1234"), ("name", "web"), ("owner", "u-1")})
    assert found[("appliance_container_cpu_cores", web)] == 1.5
    assert found[("appliance_container_memory_used_bytes", web)] == 200 << 20
    assert found[("appliance_container_memory_limit_bytes", web)] == 512 << 20
    assert found[("appliance_container_disk_used_bytes", web)] == 1 << 30
    assert found[("appliance_container_disk_limit_bytes", web)] == 5 << 30
    odd = frozenset({("id", "efgh5678"), ("name", 'quote " and \\ back'), ("owner", "u-2")})
    assert found[("appliance_container_disk_used_bytes", odd)] == 7  # label escaping survives the round trip
    assert len([k for k in found if k[0] == "appliance_container_cpu_cores"]) == 2


def test_each_scrape_reads_the_latest_snapshot_and_none_means_no_gauges():
    current = [None]
    assert exposition(lambda: current[0]) == {}
    current[0] = SNAPSHOT
    assert ("appliance_host_cpu_cores", frozenset({("host", "node-a")})) in exposition(lambda: current[0])
    gone = Snapshot(timestamp=2.0, host=SNAPSHOT.host, guests=SNAPSHOT.guests[:1])
    current[0] = gone  # a container deleted since: its series go with it
    names = {labels for name, labels in exposition(lambda: current[0]) if name == "appliance_container_cpu_cores"}
    assert names == {frozenset({("id", "abcd1234"), ("name", "web"), ("owner", "u-1")})}


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_the_directory_drops_live_gauges_of_dead_processes_and_keeps_their_counters(tmp_path):
    dead, alive = _dead_pid(), os.getppid()
    for kind in ("counter", "histogram", "gauge_livesum"):
        for pid in (dead, alive):
            (tmp_path / f"{kind}_{pid}.db").write_bytes(b"")
    assert metricsdir.clear_dead(tmp_path) == [dead]
    assert sorted(p.name for p in tmp_path.glob("*.db")) == sorted(
        [f"counter_{dead}.db", f"histogram_{dead}.db", f"counter_{alive}.db", f"histogram_{alive}.db",
         f"gauge_livesum_{alive}.db"])


def test_a_start_with_no_other_process_left_starts_afresh(tmp_path):
    dead = _dead_pid()
    for name in (f"counter_{dead}.db", f"gauge_livesum_{dead}.db", f"counter_{os.getpid()}.db", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    metricsdir.clear_dead(tmp_path, starting=True)
    # a file under this process's own pid is a stale one (pids come round again)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "notes.txt"]


def test_a_start_beside_running_daemons_keeps_the_counters(tmp_path):
    dead, alive = _dead_pid(), os.getppid()
    for name in (f"counter_{dead}.db", f"gauge_livesum_{dead}.db", f"counter_{alive}.db",
                 f"gauge_livesum_{os.getpid()}.db"):
        (tmp_path / name).write_bytes(b"")
    metricsdir.clear_dead(tmp_path, starting=True)
    assert {p.name for p in tmp_path.glob("*.db")} == {f"counter_{alive}.db", f"counter_{dead}.db"}


def test_an_exited_worker_takes_only_its_live_gauges(tmp_path, monkeypatch):
    monkeypatch.setenv(metricsdir.VARIABLE, str(tmp_path))
    for name in ("counter_41.db", "gauge_livesum_41.db", "gauge_livesum_42.db"):
        (tmp_path / name).write_bytes(b"")
    metricsdir.process_exited(41)
    assert sorted(p.name for p in tmp_path.glob("*.db")) == ["counter_41.db", "gauge_livesum_42.db"]
