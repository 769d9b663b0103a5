"""Transfer progress for ``/sse/progress``: in-memory, per (user, transfer id).

A transfer id is chosen by the client, so it is only meaningful together with
the user who runs the transfer: a watcher sees only its own user's transfer of
that id. A watcher may subscribe before the transfer starts (browsers open the
event stream first). Watchers see the latest state, never a backlog: a slow
watcher skips intermediate figures instead of buffering them.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

# Keep a finished transfer this long so a late watcher still gets "done".
KEEP_FINISHED = 60.0
# A watcher whose transfer never starts is ended after this long.
WAIT_FOR_START = 600.0
# Notify watchers at most this often (plus always on start and finish).
MIN_INTERVAL = 0.1


@dataclass
class Snapshot:
    direction: str
    bytes: int
    total: int
    done: bool


@dataclass
class _Entry:
    state: Snapshot | None = None
    version: int = 0
    watchers: int = 0
    finished_at: float | None = None
    created_at: float = field(default_factory=time.monotonic)
    last_notify: float = 0.0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def publish(self, state: Snapshot) -> None:
        self.state = state
        self.version += 1
        self.last_notify = time.monotonic()
        self.finished_at = self.last_notify if state.done else None
        event, self.changed = self.changed, asyncio.Event()
        event.set()


class Reporter:
    """Held by one transfer; cheap to call per chunk (rate-limited)."""

    def __init__(self, entry: _Entry, direction: str, total: int):
        self.entry = entry
        self.direction = direction
        self.total = total
        entry.publish(Snapshot(direction, 0, total, False))

    def update(self, done_bytes: int) -> None:
        if time.monotonic() - self.entry.last_notify >= MIN_INTERVAL:
            self.entry.publish(Snapshot(self.direction, done_bytes, max(self.total, done_bytes), False))

    def finish(self, done_bytes: int, ok: bool = True) -> None:
        total = done_bytes if ok else max(self.total, done_bytes)
        self.entry.publish(Snapshot(self.direction, done_bytes, total, True))


class _NullReporter:
    def update(self, done_bytes: int) -> None:
        pass

    def finish(self, done_bytes: int, ok: bool = True) -> None:
        pass


NULL_REPORTER = _NullReporter()


class ProgressHub:
    def __init__(self):
        self._entries: dict[tuple[str, str], _Entry] = {}

    def _entry(self, user_id: str, transfer_id: str) -> _Entry:
        self._expire()
        key = (user_id, transfer_id)
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry()
        return entry

    def _expire(self) -> None:
        now = time.monotonic()
        for key, e in list(self._entries.items()):
            if e.watchers:
                continue
            if e.finished_at is not None and now - e.finished_at > KEEP_FINISHED:
                del self._entries[key]
            elif e.state is None and now - e.created_at > WAIT_FOR_START:
                del self._entries[key]

    def start(self, user_id: str | None, transfer_id: str, direction: str, total: int):
        if not transfer_id or not user_id:
            return NULL_REPORTER
        return Reporter(self._entry(user_id, transfer_id), direction, total)

    async def watch(self, user_id: str, transfer_id: str):
        """Yield snapshots until one with done=True (or the wait times out)."""
        entry = self._entry(user_id, transfer_id)
        entry.watchers += 1
        seen = -1
        deadline = time.monotonic() + WAIT_FOR_START
        try:
            while True:
                if entry.version != seen and entry.state is not None:
                    seen = entry.version
                    yield entry.state
                    if entry.state.done:
                        return
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                try:
                    await asyncio.wait_for(entry.changed.wait(), timeout=remaining)
                except TimeoutError:
                    return
                if entry.state is not None and not entry.state.done:
                    deadline = time.monotonic() + WAIT_FOR_START
        finally:
            entry.watchers -= 1
