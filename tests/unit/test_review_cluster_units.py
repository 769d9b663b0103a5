"""Review of issue 13 (one cloud over many hosts): weaknesses found, as tests.

Each test states the behaviour we want; each failed on the merged code and
passes since its fix (a certificate naming no host is refused; dbmove hides
every spelling of a password; the outbox stays bounded and thread-safe; a
malformed notification is skipped and the relay goes on)."""
from __future__ import annotations

import asyncio
import collections
import threading

import grpc
import pytest

from appliance.contract import METHODS
from appliance.core import context as ctx
from appliance.core.auth.identity import Tokens
from appliance.core.db import open_database
from appliance.core.dbmove import shown
from appliance.core.fleet import membership, notify
from appliance.core.guard import Authenticator, CallGuard

AUTHORIZE = METHODS["/appliance.v1.SshGatewayService/Authorize"]


class Context:
    def __init__(self, auth: dict, metadata=()):
        self.auth, self.metadata, self.aborted = auth, metadata, None

    def auth_context(self):
        return self.auth

    def invocation_metadata(self):
        return self.metadata

    async def abort(self, code, details=""):
        self.aborted = (code, details)
        raise grpc.aio.AbortError()


@pytest.fixture(autouse=True)
def database(tmp_path):
    open_database(f"sqlite:///{tmp_path / 'db.sqlite'}")


def test_a_certificate_naming_no_host_of_the_table_is_no_peer():
    # The host table is empty: "ghost" was removed (or never joined), but its
    # certificate (825 days, no CRL) is still signed by the cluster CA.
    guard = CallGuard(AUTHORIZE, Authenticator(Tokens("s" * 32)), cluster=membership.Members())
    ghost = Context({"transport_security_type": [b"ssl"], "x509_common_name": [b"ghost"]})

    async def enter():
        tokens, principal = await guard.enter(ghost)
        ctx.reset(tokens)
        return principal

    with pytest.raises(grpc.aio.AbortError):
        asyncio.run(enter())   # was admitted: Authorize/Recheck/ShipLogs answered
    assert ghost.aborted[0] == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize("url, secret", [
    ("postgresql://appliance:hunter2@db:5432/appliance", "hunter2"),                    # hidden: fine
    ("postgresql://appliance:hun%2Fter2@db/appliance", "hun%2Fter2"),                   # hidden: fine
    ("postgresql://appliance@db/appliance?password=hunter2", "hunter2"),
    ("postgresql://appliance:hun/ter2@db/appliance", "hun/ter2"),
    ("postgresql://appliance:hun#ter2@db/appliance", "hun#ter2"),
])
def test_dbmove_never_prints_the_password(url, secret):
    assert secret not in shown(url)


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
