"""Connection limits and live re-checks of the SSH gateway (docs/access.md "Limits").

``Registry`` knows every open client connection and enforces:

- at most ``ssh_max_connections`` in total and ``ssh_max_connections_per_source``
  per client address, at accept (the socket is closed before any SSH byte);
- a login within ``ssh_auth_timeout`` seconds of the accept, or the connection
  is closed (paramiko itself never times out a server-side login);
- at most ``ssh_max_connections_per_user`` / ``_per_container`` logged-in
  connections (``admit``);
- every ``ssh_recheck_seconds``, one ``Recheck`` call to the core for every
  logged-in connection: a connection whose key was deleted, whose container
  had SSH turned off, was stopped or deleted, or whose owner was deleted, is
  closed.

One housekeeping thread does the timing for all connections.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Protocol

from appliance import metrics

log = logging.getLogger("appliance.ssh")

TICK = 0.5
# A connection over its user/container cap may still read why its channel was
# refused before it is closed.
OVER_LIMIT_GRACE = 2.0


class Tracked(Protocol):
    source: str
    accepted_at: float
    grant: tuple[str, str, str] | None      # (container_id, owner_id, fingerprint)
    counted: tuple[str, str] | None         # (owner_id, container_id) once admitted

    def is_authenticated(self) -> bool: ...
    def logged_in(self) -> object | None: ...   # the admission, counted against the caps
    def shutdown(self, reason: str) -> None: ...


class Registry:
    def __init__(self, config, recheck: Callable[[list[tuple[str, str, str]]], list[bool] | None]):
        self.config = config
        self.recheck = recheck
        self.lock = threading.Lock()
        self.conns: set = set()
        self.by_source: Counter = Counter()
        self.by_user: Counter = Counter()
        self.by_container: Counter = Counter()
        self.deadlines: dict = {}           # conn -> monotonic time it must be gone by
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    # -- accounting -----------------------------------------------------------------------
    def open(self, conn: Tracked) -> str | None:
        """Registers a new connection; the reason it is refused, or None."""
        c = self.config
        with self.lock:
            if len(self.conns) >= c.ssh_max_connections:
                return f"{len(self.conns)} connections open (ssh_max_connections)"
            if self.by_source[conn.source] >= c.ssh_max_connections_per_source:
                return f"{self.by_source[conn.source]} connections from this address (ssh_max_connections_per_source)"
            self.conns.add(conn)
            metrics.SSH_CONNECTIONS.inc()
            self.by_source[conn.source] += 1
            self.deadlines[conn] = conn.accepted_at + c.ssh_auth_timeout
        return None

    def close(self, conn: Tracked) -> None:
        with self.lock:
            if conn not in self.conns:
                return
            self.conns.discard(conn)
            metrics.SSH_CONNECTIONS.dec()
            self.deadlines.pop(conn, None)
            _drop(self.by_source, conn.source)
            if conn.counted:
                metrics.SSH_SESSIONS.dec()
                owner, cid = conn.counted
                _drop(self.by_user, owner)
                _drop(self.by_container, cid)
                conn.counted = None

    def admit(self, conn: Tracked, owner: str, cid: str) -> str | None:
        """Counts a logged-in connection against its user and container caps."""
        c = self.config
        with self.lock:
            if conn not in self.conns:
                return "connection closed"
            self.deadlines.pop(conn, None)
            if self.by_user[owner] >= c.ssh_max_connections_per_user:
                refusal = f"{self.by_user[owner]} connections of this user (ssh_max_connections_per_user)"
            elif self.by_container[cid] >= c.ssh_max_connections_per_container:
                refusal = f"{self.by_container[cid]} connections to {cid} (ssh_max_connections_per_container)"
            else:
                self.by_user[owner] += 1
                self.by_container[cid] += 1
                conn.counted = (owner, cid)
                metrics.SSH_SESSIONS.inc()
                return None
            self.deadlines[conn] = time.monotonic() + OVER_LIMIT_GRACE
            return refusal

    def still_allowed(self, grants: list[tuple[str, str, str]]) -> list[bool] | None:
        try:
            return self.recheck(grants)
        except Exception as e:  # noqa: BLE001 - the core is restarting: keep sessions, check again later
            log.warning("ssh: admission re-check failed: %s", e)
            return None

    # -- housekeeping ------------------------------------------------------------------------
    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="ssh-housekeeping", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()

    def _run(self) -> None:
        next_recheck = time.monotonic() + self.config.ssh_recheck_seconds
        while not self.stopping.wait(TICK):
            now = time.monotonic()
            try:
                self._expire(now)
                if now >= next_recheck:
                    next_recheck = now + self.config.ssh_recheck_seconds
                    self._recheck_all()
            except Exception:  # noqa: BLE001 - never let the housekeeping thread die
                log.exception("ssh: housekeeping failed")

    def _expire(self, now: float) -> None:
        with self.lock:
            due = [conn for conn, deadline in self.deadlines.items() if deadline <= now]
            for conn in due:
                self.deadlines.pop(conn, None)
        for conn in due:
            if conn.counted is not None:
                continue
            if not conn.is_authenticated():
                conn.shutdown("no login within ssh_auth_timeout")
            elif conn.logged_in() is None:  # logged in but no channel yet (ssh -N): count it now
                conn.shutdown("over a connection limit")

    def _recheck_all(self) -> None:
        with self.lock:
            live = [conn for conn in self.conns if conn.counted and conn.grant]
        if not live:
            return
        allowed = self.still_allowed([conn.grant for conn in live])
        if allowed is None:
            return
        for conn, ok in zip(live, allowed, strict=True):
            if not ok:
                conn.shutdown("admission revoked")


def _drop(counter: Counter, key) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]
