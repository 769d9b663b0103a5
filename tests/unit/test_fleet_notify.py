"""The NOTIFY payload of core/fleet/notify.py: round trip, and PostgreSQL's 8000-byte limit."""
import json

from appliance.core.fleet import notify
from appliance.v1 import compute_pb2


def test_payload_round_trip():
    event = compute_pb2.ContainerStatus(container_id="abc123", status="running", external_ip="10.217.0.5")
    payload = notify.encode("host-a", "U1x2y3", event)
    assert len(payload.encode()) <= notify.MAX_PAYLOAD
    assert notify.decode(payload, compute_pb2.ContainerStatus) == ("host-a", "U1x2y3", event)


def test_an_event_too_large_becomes_a_lag_marker():
    event = compute_pb2.ContainerStatus(container_id="x" * 9000, status="running")
    payload = notify.encode("host-a", "U1x2y3", event)
    assert len(payload.encode()) <= notify.MAX_PAYLOAD
    assert json.loads(payload) == {"o": "host-a", "t": "U1x2y3", "lag": 1}
    assert notify.decode(payload, compute_pb2.ContainerStatus) == ("host-a", "U1x2y3", None)


def test_a_host_alone_on_sqlite_carries_nothing(tmp_path):
    from appliance.core.db import open_database
    from appliance.core.events import Bus
    open_database(f"sqlite:///{tmp_path / 'a.db'}")
    bus = Bus()
    assert notify.attach(bus, compute_pb2.ContainerStatus, "host-a") is None
    assert bus.relay is None


def test_a_changed_notice_round_trip():
    assert notify.decode(notify.encode_changed("host-b"), compute_pb2.ContainerStatus) == ("host-b", None, None)


def test_an_ingress_rule_change_is_announced_then_applied():
    import asyncio
    from types import SimpleNamespace

    from appliance.core.compute import ingress
    calls = []

    async def sync():
        calls.append("sync")

    servicer = SimpleNamespace(ingress=SimpleNamespace(announce=lambda: calls.append("announce"), sync=sync))
    asyncio.run(ingress._sync_reporting(servicer))
    assert calls == ["announce", "sync"]
