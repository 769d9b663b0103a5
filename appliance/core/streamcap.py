"""A per-user cap on long-lived streams (terminals, container logs,
``/sse/health``, ``/sse/logs``): each costs the core a task and a poll or a
queue for as long as it is open, so one user may hold only so many of a kind
at once; beyond that the call is 429 before anything is opened."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from appliance.errors import TooManyRequests


class PerUserCap:
    """Open streams of one kind per user; ``limit`` <= 0 means no cap."""

    def __init__(self, limit: int, refusal: str):
        self.limit = limit
        self.refusal = refusal   # e.g. "at most {limit} ... per user; close one first"
        self.open: Counter[str] = Counter()

    def claim(self, user_id: str) -> None:
        if 0 < self.limit <= self.open[user_id]:
            raise TooManyRequests(self.refusal.format(limit=self.limit))
        self.open[user_id] += 1

    def release(self, user_id: str) -> None:
        self.open[user_id] -= 1
        if self.open[user_id] <= 0:
            del self.open[user_id]

    @contextmanager
    def hold(self, user_id: str) -> Iterator[None]:
        """Claim for the ``with`` block (an async generator's stream: until it is closed)."""
        self.claim(user_id)
        try:
            yield
        finally:
            self.release(user_id)
