"""The NOTIFY payload of core/fleet/notify.py: round trip, and PostgreSQL's 8000-byte limit; the outbox
stays bounded; a malformed notification is skipped and the relay goes on."""
import collections
import json
import threading

import pytest

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


def test_the_outbox_stays_bounded_for_changed_notices(monkeypatch):
    monkeypatch.setattr(notify, "MAX_OUTBOX", 5)
    events = notify.FleetEvents.__new__(notify.FleetEvents)   # no connection, no thread
    events.outbox = collections.deque()
    events._outbox_lock = threading.Lock()
    events._wake = lambda: None
    for _ in range(50):
        events.changed()
    assert len(events.outbox) <= notify.MAX_OUTBOX


class _Note:
    def __init__(self, payload):
        self.payload = payload


class _Conn:
    def __init__(self, *payloads):
        self.notifies = [_Note(p) for p in payloads]


@pytest.mark.parametrize("payload", [
    '{"o": "hostb"',                                   # not JSON
    "1",                                               # JSON, no object
    '{"o": "hostb", "t": "U1", "e": "////"}',           # no protobuf
])
def test_a_malformed_notification_is_skipped_and_the_relay_goes_on(payload):
    from appliance.v1 import compute_pb2
    events = notify.FleetEvents.__new__(notify.FleetEvents)
    events.origin, events.message_type = "hosta", compute_pb2.ContainerStatus
    delivered = []
    events._to_loop = lambda fn, *args: delivered.append(args)
    # a bad notification first, a good one after it: the good one must arrive
    good = notify.encode("hostb", "U1", compute_pb2.ContainerStatus(container_id="c1", status="running"))
    events._receive(_Conn(payload, good))
    assert len(delivered) == 1
