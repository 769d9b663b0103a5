"""Cut off request bodies that stall (docs/storage.md, ``upload_stall_seconds``).

Tornado waits for a streamed body as long as the client keeps the connection
open, and an upload holds a core call and a temp file meanwhile. ``BodyWatch``
judges the client once per period of ``upload_stall_seconds``: at least
``upload_min_bytes_per_second`` on average over the period (and at least one
byte) must have arrived, or ``on_stall`` is called, which ends the request
(408) and discards the upload.

Time the handler spends waiting for the core or the disk (``busy()``: the
gateway stops reading the socket then) is not held against the client: it is
taken out of the period, and a period spent mostly busy is not judged. While
the client keeps up, ``on_alive`` runs once per period, so a slow but honest
upload still shows the core a message now and then.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable


class BodyWatch:
    def __init__(self, seconds: float, min_rate: int, on_stall: Callable[[str], None],
                 on_alive: Callable[[], None] | None = None):
        self.seconds = seconds
        self.min_rate = max(0, min_rate)
        self.on_stall = on_stall
        self.on_alive = on_alive
        self.received = 0
        self._loop = asyncio.get_running_loop()
        self._start = self._loop.time()
        self._mark = 0
        self._paused = 0.0
        self._busy_since: float | None = None
        self._handle = self._loop.call_later(seconds, self._check) if seconds > 0 else None

    def arrived(self, n: int) -> None:
        self.received += n

    @contextlib.contextmanager
    def busy(self):
        """The handler is processing (maybe waiting for the core): not the client's time."""
        self._busy_since = self._loop.time()
        try:
            yield
        finally:
            self._paused += self._loop.time() - self._busy_since
            self._busy_since = None

    def _check(self) -> None:
        now = self._loop.time()
        got = self.received - self._mark
        if self._busy_since is None:
            active = now - self._start - self._paused
            if active >= self.seconds / 2 and got < max(1.0, self.min_rate * active):
                self._handle = None
                self.on_stall(f"the request body stalled: {got} bytes in {active:.0f} s "
                              f"(at least {self.min_rate} bytes/s are needed)")
                return
        if got and self.on_alive is not None:
            self.on_alive()
        self._start, self._mark, self._paused = now, self.received, 0.0
        if self._busy_since is not None:
            self._busy_since = now
        self._handle = self._loop.call_later(self.seconds, self._check)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
