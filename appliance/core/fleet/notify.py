"""Status events across hosts: PostgreSQL ``LISTEN/NOTIFY`` (docs/cluster-notify.md).

When the cores of several hosts share one PostgreSQL, every event published
on a core's bus (``core/events.py``: a container's status, to its owner's
topic) is also sent as ``NOTIFY appliance_events, <payload>``; every core
LISTENs on that channel and hands the events of *other* origins to its own
subscribers (``Bus.deliver``), then calls ``on_remote`` (compute: ingress
follows the running containers of every host). With SQLite (a host alone)
nothing of this runs.

One thread owns one psycopg2 connection (autocommit): it waits on the
connection's socket and a wake-up pipe, sends what the loop queued (a few
NOTIFYs per round trip) and reads what arrived. Publishing only queues the
event (the thread encodes it): it never waits for the database. When the connection drops (a PostgreSQL
restart, ``pg_terminate_backend``) the thread reconnects with backoff; the
events it had not sent yet are sent then, and every subscriber of this core
is dropped as lagged (``Bus.lag``) because events of other hosts may have
been missed meanwhile: status streams end and clients re-read the snapshot.

Payload (JSON, under PostgreSQL's 8000-byte limit): ``{"o": origin host,
"t": topic, "e": base64 of the protobuf event}``. An event too large for it
is sent as ``{"o", "t", "lag": 1}``: the other hosts drop that topic's
subscribers, which re-read the snapshot, rather than miss it silently.
``{"o", "changed": 1}`` (``changed()``): shared state changed with no status
event (an ingress rule added or removed); the other cores call ``on_remote``.
"""
from __future__ import annotations

import asyncio
import base64
import collections
import json
import logging
import os
import select
import threading
from collections.abc import Callable, Hashable
from typing import Any

import peewee as pw

from appliance import metrics
from appliance.core.events import Bus
from appliance.logsafe import clip

log = logging.getLogger("appliance.core.fleet.notify")

CHANNEL = "appliance_events"
APPLICATION_NAME = "appliance-events"
MAX_PAYLOAD = 7999        # bytes; PostgreSQL refuses 8000 and more (default build)
MAX_OUTBOX = 10_000       # events queued while the database is unreachable
BATCH = 32                # NOTIFYs per round trip
IDLE_CHECK_SECONDS = 5.0  # a quiet connection is probed this often (finds a dead one)
BACKOFF_FIRST, BACKOFF_MAX = 0.1, 5.0


def encode(origin: str, topic: Hashable, event: Any) -> str:
    payload = json.dumps({"o": origin, "t": topic,
                          "e": base64.b64encode(event.SerializeToString()).decode()})
    if len(payload.encode()) > MAX_PAYLOAD:
        log.warning("an event for %r is too large for NOTIFY (%d bytes): the other hosts' "
                    "subscribers of it re-read their snapshot", topic, len(payload))
        payload = json.dumps({"o": origin, "t": topic, "lag": 1})
    return payload


def encode_changed(origin: str) -> str:
    return json.dumps({"o": origin, "changed": 1})


def decode(payload: str, message_type) -> tuple[str, Hashable | None, Any | None]:
    """(origin, topic, event); event None: the event was too large to carry;
    topic None too: a "changed" notice (``FleetEvents.changed``)."""
    data = json.loads(payload)
    if data.get("changed"):
        return data["o"], None, None
    if data.get("lag"):
        return data["o"], data["t"], None
    return data["o"], data["t"], message_type.FromString(base64.b64decode(data["e"]))


class FleetEvents:
    """Carries one bus's events to and from the other hosts' cores."""

    def __init__(self, database: pw.PostgresqlDatabase, origin: str, bus: Bus, message_type,
                 on_remote: Callable[[], None] | None = None):
        # application_name: the connection is easy to find in pg_stat_activity. On TCP, a
        # dead server or network is noticed in seconds, not after the kernel's retransmissions.
        self.connect_params = {"connect_timeout": 10, "keepalives": 1, "keepalives_idle": 10,
                               "keepalives_interval": 5, "keepalives_count": 3, "tcp_user_timeout": 15000,
                               "dbname": database.database, **database.connect_params,
                               "application_name": f"{APPLICATION_NAME} {origin}"[:63]}
        self.origin = origin
        self.bus = bus
        self.message_type = message_type
        self.on_remote = on_remote
        self.outbox: collections.deque[tuple[Hashable | None, Any]] = collections.deque()
        self._outbox_lock = threading.Lock()
        self.connected = threading.Event()
        self.connections = 0          # connections made (1 + reconnects)
        self.backend_pid: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._thread = threading.Thread(target=self._run, name="fleet-events", daemon=True)
        bus.relay = self.send  # from now on: events published before start() wait in the outbox

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread.start()

    def close(self) -> None:
        if self.bus.relay == self.send:
            self.bus.relay = None
        self._stop.set()
        self._wake()
        if self._thread.is_alive():
            self._thread.join(5)
        os.close(self._wake_r)
        os.close(self._wake_w)

    # -- the loop's side ---------------------------------------------------------
    def send(self, topic: Hashable, event: Any) -> None:
        """Queue ``event`` for the other hosts (the bus's relay; never blocks)."""
        self._enqueue((topic, event))  # encoded by the thread: off the loop

    def changed(self) -> None:
        """Tell the other hosts' cores that shared state changed outside any status
        event (an ingress rule added or removed): they call their ``on_remote``."""
        self._enqueue((None, None))

    def _enqueue(self, item: tuple) -> None:
        with self._outbox_lock:   # the thread takes items off the other end
            if len(self.outbox) >= MAX_OUTBOX:
                self.outbox.popleft()
                log.warning("fleet events: the database is unreachable and %d events wait; "
                            "dropping the oldest", MAX_OUTBOX)
            self.outbox.append(item)
        self._wake()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"!")
        except (BlockingIOError, OSError):
            pass  # already awake (pipe full) or closed

    def _arrive(self, topic: Hashable | None, event: Any | None) -> None:
        if topic is None:
            pass  # a "changed" notice: on_remote only
        elif event is None:
            self.bus.lag("an event from another host was too large to carry", topic)
        else:
            self.bus.deliver(topic, event)
        if self.on_remote is not None:
            self.on_remote()

    def _resynced(self) -> None:
        self.bus.lag("the events of other hosts were interrupted (database connection lost)")
        if self.on_remote is not None:
            self.on_remote()

    def _to_loop(self, fn, *args) -> None:
        try:
            self._loop.call_soon_threadsafe(fn, *args)  # type: ignore[union-attr]
        except RuntimeError:
            pass  # the loop closed: the core is stopping

    # -- the thread's side -------------------------------------------------------
    def _run(self) -> None:
        import psycopg2  # with PostgreSQL only (the "postgres" extra), as in peewee
        backoff = BACKOFF_FIRST
        while not self._stop.is_set():
            try:
                conn = psycopg2.connect(**self.connect_params)
                conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute(f"LISTEN {CHANNEL}")
                    self.backend_pid = conn.get_backend_pid()
            except psycopg2.Error as e:
                log.warning("fleet events: cannot reach the database (%s); retrying in %.1fs",
                            str(e).strip(), backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            self.connections += 1
            if self.connections > 1:
                log.info("fleet events: listening again")
                metrics.FLEET_EVENTS_RECONNECTS.inc()
                self._to_loop(self._resynced)
            backoff = BACKOFF_FIRST
            self.connected.set()
            try:
                self._serve(conn)
            except (psycopg2.Error, OSError) as e:
                log.warning("fleet events: connection lost (%s); reconnecting", str(e).strip())
            except Exception:  # noqa: BLE001 - never end the relay: reconnect (the streams re-read)
                log.exception("fleet events: unexpected error; reconnecting")
                self._stop.wait(backoff)
            finally:
                self.connected.clear()
                conn.close()

    def _serve(self, conn) -> None:
        with conn.cursor() as cur:
            while not self._stop.is_set():
                self._flush(cur)
                ready, _, _ = select.select([conn, self._wake_r], [], [], IDLE_CHECK_SECONDS)
                if self._wake_r in ready:
                    try:
                        while os.read(self._wake_r, 4096):
                            pass
                    except BlockingIOError:
                        pass
                if conn in ready:
                    conn.poll()  # raises when the server ended the connection
                elif not ready:
                    cur.execute("SELECT 1")
                self._receive(conn)

    def _flush(self, cur) -> None:
        while True:
            with self._outbox_lock:
                items = [self.outbox.popleft() for _ in range(min(BATCH, len(self.outbox)))]
            if not items:
                return
            try:
                batch = [encode(self.origin, *item) if item[0] is not None else encode_changed(self.origin)
                         for item in items]
                cur.execute("; ".join(["SELECT pg_notify(%s, %s)"] * len(batch)),
                            [v for payload in batch for v in (CHANNEL, payload)])
            except BaseException:
                with self._outbox_lock:   # not sent: back in front, retried after reconnecting
                    self.outbox.extendleft(reversed(items))
                raise
            metrics.FLEET_EVENTS_SENT.inc(len(batch))

    def _receive(self, conn) -> None:
        for note in conn.notifies:
            try:
                origin, topic, event = decode(note.payload, self.message_type)
            except Exception as e:  # noqa: BLE001 - anyone with the role may NOTIFY: skip, go on
                log.warning("fleet events: ignoring a malformed notification: %s", clip(repr(e)))
                continue
            if origin != self.origin:
                metrics.FLEET_EVENTS_RECEIVED.inc()
                self._to_loop(self._arrive, topic, event)
        conn.notifies.clear()


def attach(bus: Bus, message_type, origin: str,
           on_remote: Callable[[], None] | None = None) -> FleetEvents | None:
    """A ``FleetEvents`` for ``bus`` when the database is PostgreSQL; None with
    SQLite (a host alone). Call ``start()`` on the loop, ``close()`` at the end."""
    from appliance.core.db import database
    if not isinstance(database.obj, pw.PostgresqlDatabase):
        return None
    return FleetEvents(database.obj, origin, bus, message_type, on_remote)
