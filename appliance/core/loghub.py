"""The log entries /sse/logs serves: the most recent ones and live readers.

Fed by the core's own records (``HubHandler``, one more root handler beside
stderr, with the same hygiene: appliance/logs.py) and by the entries the
gateways ship (logservice.py). An entry is either a tuple whose second and
third items are its level and source: ``(timestamp, level, source, record)``
for the core's own, turned into a message only when a reader takes it (most
never are: logging a line costs the hub a tuple), or ``(timestamp, level,
source, message, attributes)``; or a LogEntry message as it arrived from a
gateway (kept as parsed: no Python work per shipped entry).

Logging must never wait for a reader, nor hold memory for one: ``publish``
is called from any thread (logging calls come from executor threads too),
takes a lock only for list and deque operations, and a reader that does not
keep up loses entries (counted, and told so) once it has ``READER_QUEUE``
unread.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable

from appliance.logs import WARN, Source, entry_of, kept, level_number
from appliance.v1 import logs_pb2

BACKLOG = 1000
READER_QUEUE = 1000

Entry = tuple | logs_pb2.LogEntry
Accept = Callable[[int, str], bool]  # (level, source) -> keep?


def level_and_source(entry: Entry) -> tuple[int, str]:
    if type(entry) is tuple:
        return entry[1], entry[2]
    return entry.level, entry.source  # type: ignore[union-attr]


def as_message(entry: Entry) -> logs_pb2.LogEntry:
    if type(entry) is not tuple:
        return entry  # type: ignore[return-value]  # a gateway's, as it arrived
    if len(entry) == 4:
        entry = entry_of(entry[3], entry[2])
    timestamp, level, source, message, attributes = entry
    return logs_pb2.LogEntry(timestamp=timestamp, level=level, source=source, message=message,
                             attributes=attributes)


class Reader:
    """One /sse/logs stream: its filter and its unread entries."""

    def __init__(self, accept: Accept, loop: asyncio.AbstractEventLoop):
        self.accept = accept
        self.loop = loop
        self.thread = threading.get_ident()
        self.entries: deque[Entry] = deque()
        self.wake = asyncio.Event()
        self.dropped = 0
        self.closed = False

    def offer(self, entry: Entry, level: int, source: str) -> None:
        if not self.accept(level, source):
            return
        if len(self.entries) >= READER_QUEUE:
            self.dropped += 1
            return
        was_empty = not self.entries
        self.entries.append(entry)
        if was_empty:  # the reader may be waiting; else it is still draining
            self._wake()

    def _wake(self) -> None:
        if threading.get_ident() == self.thread:
            self.wake.set()
        else:
            try:
                self.loop.call_soon_threadsafe(self.wake.set)
            except RuntimeError:  # the loop is closed: nobody reads any more
                pass

    def close(self) -> None:
        self.closed = True
        self._wake()

    async def __aiter__(self) -> AsyncIterator[Entry]:
        while not self.closed:
            if self.dropped:
                count, self.dropped = self.dropped, 0
                yield dropped_entry(count, "this reader fell behind")
            if self.entries:
                yield self.entries.popleft()
                continue
            self.wake.clear()
            if not self.entries and not self.closed:
                await self.wake.wait()


def dropped_entry(count: int, why: str, source: str = "core") -> Entry:
    return (int(time.time()), WARN, source, f"{count} log entries dropped: {why}",
            {"logger": "appliance.core.logs", "dropped": str(count)})


class LogHub:
    def __init__(self, backlog: int = BACKLOG):
        self.recent: deque[Entry] = deque(maxlen=backlog)
        self.readers: list[Reader] = []
        self.lock = threading.Lock()

    def publish(self, entry: tuple) -> None:
        with self.lock:
            self.recent.append(entry)
            for reader in self.readers:
                reader.offer(entry, entry[1], entry[2])

    def publish_shipped(self, entries: Iterable[logs_pb2.LogEntry]) -> None:
        with self.lock:
            self.recent.extend(entries)
            if self.readers:
                for entry in entries:
                    for reader in self.readers:
                        reader.offer(entry, entry.level, entry.source)

    def open(self, accept: Accept) -> Reader:
        """A reader with the matching backlog already queued (oldest first)."""
        reader = Reader(accept, asyncio.get_running_loop())
        with self.lock:
            reader.entries.extend(e for e in self.recent if accept(*level_and_source(e)))
            self.readers.append(reader)
        return reader

    def close(self, reader: Reader) -> None:
        with self.lock:
            if reader in self.readers:
                self.readers.remove(reader)
        reader.close()

    def close_all(self) -> None:
        """The core is stopping: every stream ends."""
        with self.lock:
            readers, self.readers = self.readers, []
        for reader in readers:
            reader.close()


class HubHandler(logging.Handler):
    """Every record the core logs, as an entry of *hub*."""

    def __init__(self, hub: LogHub, source: str = ""):
        super().__init__()
        self.hub = hub
        self.source = source

    def emit(self, record: logging.LogRecord) -> None:
        # The record has passed StripQueryStrings: its args are numbers and strings
        # only (or merged into msg), so formatting it later gives the same line.
        self.hub.publish((int(record.created), level_number(record.levelno), self.source or Source.name,
                          kept(record)))
