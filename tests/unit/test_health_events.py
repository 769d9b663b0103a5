"""The health stream's events (core/cluster/health.py) as the gateway's codec
writes them: the pressure conditions and their thresholds, ``Unknown`` for a
host that stopped answering, the pods access rule, the JSON types."""
from __future__ import annotations

from types import SimpleNamespace

from appliance.core.cluster import health
from appliance.core.cluster.readings import GuestReading, HostReading, Snapshot
from appliance.core.cluster.servicer import visibility
from appliance.http import codec

GIB = 1 << 30


def host(**changes) -> HostReading:
    values = dict(name="h1", cpu_cores=4, cpu_percent=25.0, memory_used_bytes=6 * GIB, memory_total_bytes=16 * GIB,
                  disk_used_bytes=40 * GIB, disk_total_bytes=100 * GIB, pids=300, pids_max=4_194_304,
                  memory_available_bytes=10 * GIB, disk_available_bytes=55 * GIB)
    return HostReading(**{**values, **changes})


def guest(gid: str, owner: str) -> GuestReading:
    return GuestReading(id=gid, name=f"box-{gid}", owner_id=owner, state="running", cpu_nanocores=250_000_000,
                        memory_used_bytes=100 << 20, memory_limit_bytes=1 << 30, disk_used_bytes=1 << 20,
                        disk_limit_bytes=20 * GIB)


def conditions(event: dict) -> dict[str, str]:
    return {c["type"]: c["status"] for c in event["payload"]["nodes"][0]["conditions"]}


def test_cluster_event_json_types():
    event = codec.to_json(health.cluster_event([Snapshot(1000.4, host())], now=1001.0, interval=5))
    assert event == {"type": "cluster", "payload": {"timestamp": 1001, "nodes": [{
        "name": "h1", "cpu_usage": "1000000000n", "cpu_capacity": "4",
        "memory_usage": f"{6 * GIB // 1024}Ki", "memory_capacity": f"{16 * GIB // 1024}Ki",
        "cpu_percent": 25.0, "memory_percent": 37.5, "disk_percent": 40.0,
        "disk_usage": 40 * GIB, "disk_capacity": 100 * GIB,
        "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "DiskPressure", "status": "False"},
                       {"type": "PIDPressure", "status": "False"}]}]}}


def test_pressure_thresholds_and_a_silent_host_is_unknown():
    def event(reading, age=0.0):
        return codec.to_json(health.cluster_event([Snapshot(1000.0, reading)], now=1000.0 + age, interval=5))

    assert conditions(event(host(memory_available_bytes=99 << 20)))["MemoryPressure"] == "True"
    assert conditions(event(host(memory_available_bytes=101 << 20)))["MemoryPressure"] == "False"
    assert conditions(event(host(disk_available_bytes=9 * GIB)))["DiskPressure"] == "True"
    assert conditions(event(host(pids=4_000_000)))["PIDPressure"] == "True"
    assert set(conditions(event(host(), age=15.0)).values()) == {"False"}      # 3 intervals: still answering
    assert set(conditions(event(host(), age=15.1)).values()) == {"Unknown"}    # older: stopped answering
    assert "Ready" not in conditions(event(host()))


def test_pods_event_json_types_and_who_sees_what():
    snap = Snapshot(1000.0, host(), [guest("a1", "alice"), guest("b1", "bob"), guest("a2", "alice")])
    alice = SimpleNamespace(is_admin=False, user_id="alice", scopes=None)
    admin = SimpleNamespace(is_admin=True, user_id="root", scopes=None)
    token = SimpleNamespace(is_admin=False, user_id="alice", scopes={"compute.alice.containers.a2": ["read"]})
    event = codec.to_json(health.pods_event([snap], 1000.0, visibility(alice)))
    assert event["type"] == "pods" and event["payload"]["timestamp"] == 1000
    assert [p["name"] for p in event["payload"]["pods"]] == ["box-a1", "box-a2"]
    assert event["payload"]["pods"][0] == {
        "name": "box-a1", "namespace": "compute-alice", "node": "h1", "cpu_usage": 250_000_000,
        "cpu_capacity": 4_000_000_000, "memory_usage": 100 << 20, "memory_capacity": 1 << 30,
        "disk_usage": 1 << 20, "disk_capacity": 20 * GIB}
    everyone = codec.to_json(health.pods_event([snap], 1000.0, visibility(admin)))["payload"]["pods"]
    assert [p["namespace"] for p in everyone] == ["compute-alice", "compute-bob", "compute-alice"]
    scoped = codec.to_json(health.pods_event([snap], 1000.0, visibility(token)))["payload"]["pods"]
    assert [p["name"] for p in scoped] == ["box-a2"]
