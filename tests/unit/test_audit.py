"""The audit trail's recorder and reader (core/audit.py): recording only queues
(bounded, overflow dropped and counted), the writer writes in batches and
drops (counts, never raises) a batch whose write fails, retention deletes old
events, the reader filters and pages."""
from __future__ import annotations

import asyncio
import time

import pytest

from appliance import metrics
from appliance.core import audit
from appliance.core import context as ctx
from appliance.core.audit import AuditEvent, AuditLog
from appliance.core.auth import users
from appliance.core.auth.identity import Principal
from appliance.core.db import open_database
from appliance.errors import Invalid


@pytest.fixture
def alice(tmp_path):
    open_database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    audit.AUDIT._queue.clear()   # events other tests' servicer calls left in the core's queue
    return users.create_user("alice", "alice-pass-1", None, False)


def dropped() -> float:
    return metrics.AUDIT_EVENTS.labels("dropped")._value.get()


def test_an_event_carries_the_calls_actor_and_address(alice):
    log = AuditLog()
    tokens = ctx.bind(Principal(user=alice, kind="session"), "192.0.2.9")
    try:
        log.record("token.created", target="tok123")
    finally:
        ctx.reset(tokens)
    log.record("login", target="bob", outcome=audit.FAILURE, user_id="")   # anonymous
    assert log.flush() == 2 and len(log) == 0
    first, second = AuditEvent.select().order_by(AuditEvent.id)
    assert (first.actor_id, first.actor, first.user_id, first.address, first.event, first.target,
            first.outcome) == (alice.public_id, "alice", alice.public_id, "192.0.2.9", "token.created",
                               "tok123", "success")
    assert (second.actor_id, second.actor, second.address, second.outcome) == ("", "", "", "failure")
    assert abs(first.at - time.time()) < 5


def test_a_full_queue_drops_and_counts_and_recording_never_writes(alice):
    log = AuditLog(capacity=3)
    before = dropped()
    for i in range(5):
        log.record("login", target=str(i))
    assert len(log) == 3 and dropped() - before == 2
    assert AuditEvent.select().count() == 0   # nothing written by record() itself
    assert log.flush() == 3


def test_a_failed_write_drops_its_batch_and_does_not_raise(alice, monkeypatch):
    log = AuditLog()
    for i in range(3):
        log.record("login", target=str(i))
    before = dropped()
    monkeypatch.setattr(AuditEvent, "insert_many", classmethod(lambda cls, rows: 1 / 0))
    assert log.flush() == 0
    assert dropped() - before == 3 and len(log) == 0


def test_the_writer_writes_in_the_background_in_batches(alice):
    log = AuditLog()

    async def run():
        writer = asyncio.create_task(log.run())
        for i in range(1200):    # more than two batches
            log.record("login", target=str(i))
        deadline = time.monotonic() + 5
        while AuditEvent.select().count() < 1200:
            assert time.monotonic() < deadline, "the writer did not write"
            await asyncio.sleep(0.05)
        writer.cancel()
    asyncio.run(run())
    assert [e.target for e in AuditEvent.select().order_by(AuditEvent.id).limit(3)] == ["0", "1", "2"]


def test_retention_deletes_old_events_only(alice):
    log = AuditLog(retention_days=30)
    log.record("login")
    log.flush()
    AuditEvent.insert(at=int(time.time()) - 31 * 86400, event="login").execute()
    assert log.prune() == 1
    assert AuditEvent.select().count() == 1
    assert AuditLog(retention_days=0).prune() == 0   # 0 keeps everything


def test_page_filters_and_pages(alice):
    bob = users.create_user("bob", "bob-pass-1", None, False)
    base = int(time.time()) - 1000
    rows = [dict(at=base + i, actor_id=alice.public_id if i % 2 else "", user_id=bob.public_id if i % 3 == 0 else "",
                 event="login" if i % 2 else "login.failed") for i in range(30)]
    AuditEvent.insert_many(rows).execute()
    events, next_before = audit.page(limit=10)
    assert len(events) == 10 and [e["at"] for e in events] == list(range(base + 29, base + 19, -1))
    seen = [e["id"] for e in events]
    while next_before is not None:
        events, next_before = audit.page(limit=10, before=next_before)
        seen += [e["id"] for e in events]
    assert len(seen) == len(set(seen)) == 30
    mine = audit.page(alice.public_id, limit=500)[0]
    assert {e["at"] - base for e in mine} == set(range(1, 30, 2))
    bobs = audit.page(bob.public_id)[0]   # about bob, by anyone
    assert {e["at"] - base for e in bobs} == set(range(0, 30, 3))
    assert {e["event"] for e in audit.page(event="login.failed")[0]} == {"login.failed"}
    window = audit.page(since=base + 5, until=base + 7)[0]
    assert [e["at"] - base for e in window] == [7, 6, 5]
    for bad in (-1, 501):
        with pytest.raises(Invalid):
            audit.page(limit=bad)
