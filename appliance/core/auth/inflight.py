"""At most one password verification at a time per client address.

argon2 takes 64 MiB and most of a CPU for a fraction of a second, and the
hashing pool is small (``password_hash_workers`` + ``password_hash_queue``).
Without this guard one client (or one tenant logging into their own account
in a loop, where every attempt succeeds and so is never throttled) could
keep every thread and queue slot busy and every other login would be 429.
With it, a client holds at most one slot whatever its concurrency. There is
deliberately no key per username alone: anyone could then keep a user's own
logins answering 429 by sending attempts for that name from elsewhere (the
lockout the throttle avoids); a burst from many addresses is bounded by the
pool itself and by the per-address failure limits.

A key is held until the verification *really* ends (the hashing thread
finishes), not when the caller gives up, hence a thread-safe set.
"""
from __future__ import annotations

import threading

from appliance.core.auth.throttle import address_key
from appliance.errors import TooManyRequests


class InFlight:
    def __init__(self):
        self._keys: set[tuple] = set()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._keys)

    @staticmethod
    def keys(username: str, address: str) -> tuple:
        return (("addr", address_key(address)),)

    def acquire(self, keys: tuple) -> None:
        """Hold every key, or raise TooManyRequests (holding none)."""
        with self._lock:
            if any(k in self._keys for k in keys):
                raise TooManyRequests("a login from this address is already in progress; "
                                      "try again shortly", retry_after=1)
            self._keys.update(keys)

    def release(self, keys: tuple) -> None:
        with self._lock:
            self._keys.difference_update(keys)
