"""The audit trail: security-relevant events with time, actor, source address,
event, target and outcome (docs/accounts.md, "Audit trail").

Recording never blocks or fails the request it describes: ``record()`` only
appends to a bounded in-memory queue (dropping the event, counted in
``appliance_audit_events_total{result="dropped"}``, when the queue is full)
and a background task writes the queue in batches, one transaction per
batch. A failed write drops its batch the same way and is logged. Events
older than ``audit_retention_days`` are deleted by the same task.
"""
from __future__ import annotations

import asyncio
import logging
from collections import deque

import peewee as pw

from appliance import metrics
from appliance.core import context as ctx
from appliance.core.db import BaseModel, User, database, now, register
from appliance.errors import Invalid

log = logging.getLogger("appliance.core.audit")

SUCCESS, FAILURE = "success", "failure"
BATCH = 500
FLUSH_SECONDS = 0.5
PRUNE_SECONDS = 3600


class AuditEvent(BaseModel):
    id = pw.AutoField()
    at = pw.BigIntegerField(index=True)
    # Public ids and names as they were: the trail outlives deleted users.
    actor_id = pw.CharField(max_length=16, default="", index=True)
    actor = pw.CharField(max_length=64, default="")
    user_id = pw.CharField(max_length=16, default="", index=True)
    address = pw.CharField(max_length=64, default="")
    event = pw.CharField(max_length=48, index=True)
    target = pw.CharField(max_length=128, default="")
    outcome = pw.CharField(max_length=8, default=SUCCESS)

    class Meta:
        table_name = "audit_event"


register(AuditEvent)


class AuditLog:
    def __init__(self, capacity: int = 10000, retention_days: int = 90):
        self.capacity = max(1, capacity)
        self.retention_days = retention_days
        self._queue: deque[dict] = deque()
        self._wake: asyncio.Event | None = None
        self._pruned_at = 0.0

    def __len__(self) -> int:
        return len(self._queue)

    def record(self, event: str, target: str = "", outcome: str = SUCCESS, user_id: str | None = None,
               actor: User | None = None) -> None:
        """Queue one event of the current call (actor and address from its
        context; *actor* where the call has none yet, as at login). *user_id*:
        the account it concerns; the actor's by default."""
        try:
            if len(self._queue) >= self.capacity:
                metrics.AUDIT_EVENTS.labels("dropped").inc()
                return
            if actor is None:
                principal = ctx.optional_principal()
                actor = principal.user if principal else None
            actor_id = actor.public_id if actor else ""
            self._queue.append({
                "at": now(), "actor_id": actor_id, "actor": actor.username if actor else "",
                "user_id": actor_id if user_id is None else user_id, "address": ctx.client_address()[:64],
                "event": event[:48], "target": target[:128], "outcome": outcome})
            if len(self._queue) >= BATCH and self._wake is not None:
                self._wake.set()
        except Exception:  # noqa: BLE001 - the request it describes goes on
            metrics.AUDIT_EVENTS.labels("dropped").inc()
            log.exception("could not queue an audit event")

    def flush(self) -> int:
        """Write what is queued (in batches); returns how many were written."""
        written = 0
        while self._queue:
            batch = [self._queue.popleft() for _ in range(min(BATCH, len(self._queue)))]
            try:
                with database.atomic():
                    AuditEvent.insert_many(batch).execute()
            except Exception as e:  # noqa: BLE001 - dropped and counted, never raised to a caller
                metrics.AUDIT_EVENTS.labels("dropped").inc(len(batch))
                log.warning("%d audit events dropped: the write failed: %s", len(batch), e)
                continue
            metrics.AUDIT_EVENTS.labels("written").inc(len(batch))
            written += len(batch)
        return written

    def prune(self) -> int:
        if self.retention_days <= 0:
            return 0
        return AuditEvent.delete().where(AuditEvent.at < now() - self.retention_days * 86400).execute()

    async def run(self) -> None:
        """The writer: flush every FLUSH_SECONDS (sooner when a batch is full), prune hourly."""
        self._wake = asyncio.Event()
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    await asyncio.wait_for(self._wake.wait(), FLUSH_SECONDS)
                except TimeoutError:
                    pass
                self._wake.clear()
                self.flush()
                if loop.time() - self._pruned_at >= PRUNE_SECONDS:
                    self._pruned_at = loop.time()
                    try:
                        self.prune()
                    except Exception as e:  # noqa: BLE001 - next hour
                        log.warning("could not prune the audit trail: %s", e)
        finally:
            self._wake = None


AUDIT = AuditLog()


def configure(capacity: int, retention_days: int) -> None:
    AUDIT.capacity = max(1, capacity)
    AUDIT.retention_days = retention_days


def record(event: str, target: str = "", outcome: str = SUCCESS, user_id: str | None = None,
           actor: User | None = None) -> None:
    AUDIT.record(event, target, outcome, user_id, actor)


MAX_PAGE = 500
FIELDS = ("id", "at", "actor_id", "actor", "user_id", "address", "event", "target", "outcome")


def page(user_id: str = "", event: str = "", since: int | None = None, until: int | None = None,
         limit: int = 0, before: int | None = None) -> tuple[list[dict], int | None]:
    """Events newest first, by or about *user_id* ("" = everyone's), and the
    ``before`` of the next page (None at the end). What is still queued is
    written first, so a reader sees what it just did."""
    limit = limit or 100
    if not 1 <= limit <= MAX_PAGE:
        raise Invalid(f"limit must be 1-{MAX_PAGE}")
    AUDIT.flush()
    q = AuditEvent.select()
    if user_id:
        q = q.where((AuditEvent.actor_id == user_id) | (AuditEvent.user_id == user_id))
    if event:
        q = q.where(AuditEvent.event == event)
    if since is not None:
        q = q.where(AuditEvent.at >= since)
    if until is not None:
        q = q.where(AuditEvent.at <= until)
    if before is not None:
        q = q.where(AuditEvent.id < before)
    rows = list(q.order_by(AuditEvent.id.desc()).limit(limit + 1))
    next_before = rows[limit - 1].id if len(rows) > limit else None
    return [{f: getattr(r, f) for f in FIELDS} for r in rows[:limit]], next_before
