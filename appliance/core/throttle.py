"""Login throttling.

Failures are counted per (username, client address) and per client address.
Keying on the pair rather than the username alone means an attacker
elsewhere cannot lock a user out: the user's own address is not slowed by
others' failures. Counters live in the core's memory (one core per host).
"""
from __future__ import annotations

import math
import time
from collections import deque


class LoginThrottle:
    def __init__(self, max_failures: int = 5, window: int = 300, per_address_factor: int = 4,
                 clock=time.monotonic):
        self.max_failures = max_failures
        self.window = window
        self.per_address_max = max_failures * per_address_factor
        self.clock = clock
        self._failures: dict[tuple, deque] = {}

    def _keys(self, username: str, address: str):
        return (("user", username.lower(), address), self.max_failures), (("addr", address), self.per_address_max)

    def _recent(self, key) -> deque:
        q = self._failures.get(key)
        if q is None:
            return deque()
        cutoff = self.clock() - self.window
        while q and q[0] <= cutoff:
            q.popleft()
        if not q:
            del self._failures[key]
        return q

    def retry_after(self, username: str, address: str) -> int:
        """Seconds until another attempt is allowed; 0 if allowed now."""
        wait = 0.0
        for key, limit in self._keys(username, address):
            q = self._recent(key)
            if len(q) >= limit:
                wait = max(wait, q[-limit] + self.window - self.clock())
        return max(1, math.ceil(wait)) if wait > 0 else 0

    def failed(self, username: str, address: str) -> None:
        t = self.clock()
        for key, limit in self._keys(username, address):
            q = self._failures.setdefault(key, deque())
            q.append(t)
            while len(q) > limit:
                q.popleft()

    def succeeded(self, username: str, address: str) -> None:
        self._failures.pop(self._keys(username, address)[0][0], None)
