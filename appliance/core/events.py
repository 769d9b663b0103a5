"""An in-process event bus: topics -> subscribers, each with a bounded queue.

A subscriber that lets its queue fill up is *dropped*, not silently skipped:
its queue is closed and its iterator raises ``Lagged``, so the stream behind
it (a status WebSocket) ends and the client knows to reconnect and re-read
the snapshot. Publishing never blocks and never waits for a slow reader.

Everything runs on the core's event loop thread; from a worker thread use
``publish_threadsafe``.

``relay`` (when set) is handed every event published here, so another
carrier can take it further: with PostgreSQL, ``core/fleet/notify.py`` sends
it to the other hosts' cores, which hand it to their subscribers with
``deliver`` (local only, never relayed again).

Per-user topics are the user's *public* id (``user_topic``), never the
database row id: SQLite hands a deleted user's row id to the next user
created, and a stream keyed by it would receive that user's events.
"""
from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Hashable
from typing import Any

from appliance.core.db import User

log = logging.getLogger("appliance.core.events")

DEFAULT_QUEUE = 256


def user_topic(user_row_id: int) -> str | None:
    """The topic of a user's events, from a row's owner id (None: the user is gone)."""
    return User.select(User.public_id).where(User.id == user_row_id).scalar()


class Lagged(Exception):
    """The subscriber fell more than its queue size behind and was dropped."""


_CLOSED = object()


class Subscription:
    def __init__(self, bus: Bus, topic: Hashable, maxsize: int):
        self.bus = bus
        self.topic = topic
        self.maxsize = maxsize
        # One slot more than the limit: the close marker always fits.
        self.queue: asyncio.Queue = asyncio.Queue(maxsize + 1)
        self.lagged = False
        self.lag_reason = ""
        self.closed = False

    def _offer(self, event: Any) -> None:
        if self.closed:
            return
        if self.queue.qsize() >= self.maxsize:
            log.warning("dropping a subscriber of %r: %d events behind", self.topic, self.maxsize)
            self.lag(f"subscriber fell {self.maxsize} events behind")
            return
        self.queue.put_nowait(event)

    def lag(self, reason: str) -> None:
        """End the subscription as lagged: its reader gets ``Lagged(reason)``."""
        if not self.closed:
            self.lagged, self.lag_reason = True, reason
            self._close()

    def _close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.bus._remove(self)
        self.queue.put_nowait(_CLOSED)

    def close(self) -> None:
        self._close()

    def __aiter__(self):
        return self

    async def __anext__(self):
        event = await self.queue.get()
        if event is _CLOSED:
            if self.lagged:
                raise Lagged(self.lag_reason)
            raise StopAsyncIteration
        return event

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Bus:
    def __init__(self):
        self._subs: dict[Hashable, set[Subscription]] = defaultdict(set)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.relay: Callable[[Hashable, Any], None] | None = None

    def subscribe(self, topic: Hashable, maxsize: int = DEFAULT_QUEUE) -> Subscription:
        self._loop = asyncio.get_running_loop()
        sub = Subscription(self, topic, maxsize)
        self._subs[topic].add(sub)
        return sub

    def publish(self, topic: Hashable, event: Any) -> None:
        self.deliver(topic, event)
        if self.relay is not None:
            self.relay(topic, event)

    def deliver(self, topic: Hashable, event: Any) -> None:
        """Hand ``event`` to this bus's subscribers only (no relay)."""
        for sub in list(self._subs.get(topic, ())):
            sub._offer(event)

    def lag(self, reason: str, topic: Hashable | None = None) -> None:
        """Drop the subscribers of ``topic`` (None: all) as lagged: events may
        have been missed (a gap in the events of other hosts), they re-read
        the snapshot."""
        groups = [self._subs.get(topic, set())] if topic is not None else list(self._subs.values())
        for subs in groups:
            for sub in list(subs):
                sub.lag(reason)

    def publish_threadsafe(self, topic: Hashable, event: Any) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.publish, topic, event)

    def subscribers(self, topic: Hashable) -> int:
        return len(self._subs.get(topic, ()))

    def close(self) -> None:
        for subs in list(self._subs.values()):
            for sub in list(subs):
                sub.close()

    def _remove(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.topic)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.topic]
