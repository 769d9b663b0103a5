"""Login throttling.

Failures are counted per (username, client address) and per client address.
Keying on the pair rather than the username alone means an attacker
elsewhere cannot lock a user out: the user's own address is not slowed by
others' failures. Counters live in the core's memory (one core per host).

An attempt takes its slot *before* its password is verified
(``reserve()``): concurrent attempts cannot all pass the check and then be
verified together. A failed verification keeps the slot, a success gives it
back (and clears the pair), an attempt that never reached verification
(e.g. the hashing pool was full) gives it back. So at most ``max_failures``
verifications per pair, and ``max_failures * per_address_factor`` per
address, happen in any window, however concurrent the attempts.

An IPv6 client normally holds a whole /64 and may pick a fresh source
address per connection, so IPv6 addresses are counted by their /64 prefix
(``address_key``); IPv4 (and IPv4-mapped IPv6) by the whole address.

Successful verifications are limited per address too (``max_successes``
in a window): a tenant who knows their own password must not keep the
hashing pool busy for everyone by logging in in a loop.

Memory is bounded globally: entries are kept oldest-updated first, expired
ones are swept on every reservation, and beyond ``max_entries`` the oldest
are dropped. Usernames reaching here are already at most 64 characters
(``users.validate_login_name``).
"""
from __future__ import annotations

import math
import time
from collections import OrderedDict

from appliance import metrics
from appliance.clientkey import client_key
from appliance.errors import TooManyRequests

# Addresses come from the gateway's metadata; a longer one is not an address.
MAX_ADDRESS_CHARS = 64
def address_key(address: str) -> str:
    """The unit one client is counted as (appliance/clientkey.py), from at most
    MAX_ADDRESS_CHARS of what the caller says its address is."""
    return client_key(address[:MAX_ADDRESS_CHARS])


class Reservation:
    """One login attempt's slot in every counter it belongs to."""

    def __init__(self, throttle: LoginThrottle, keys: tuple, stamp: float):
        self._throttle = throttle
        self._keys = keys
        self._stamp = stamp
        self._open = True

    def failed(self) -> None:
        """The password was verified and wrong: the slot stays counted."""
        self._open = False

    def succeeded(self) -> None:
        """Right password: the pair starts afresh; the address gets its slot back."""
        if self._open:
            self._open = False
            throttle = self._throttle
            throttle._entries.pop(self._keys[0], None)
            throttle._release(self._keys[1:], self._stamp)
            throttle._add(("ok",) + self._keys[1][1:], throttle.clock())

    def half_succeeded(self) -> None:
        """Right password, a second factor still to come: the slot is given back
        and counts as a success, but the pair's failures stay - wrong codes
        must add up across logins, not start afresh with each right password."""
        if self._open:
            self._open = False
            throttle = self._throttle
            throttle._release(self._keys, self._stamp)
            throttle._add(("ok",) + self._keys[1][1:], throttle.clock())

    def cancel(self) -> None:
        """Nothing was verified: give the slot back."""
        if self._open:
            self._open = False
            self._throttle._release(self._keys, self._stamp)

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc) -> None:
        self.cancel()  # no-op once failed() or succeeded() was called


class LoginThrottle:
    def __init__(self, max_failures: int = 5, window: int = 300, per_address_factor: int = 4,
                 max_entries: int = 20000, clock=time.monotonic, max_successes: int = 60):
        self.max_failures = max_failures
        self.window = window
        self.per_address_max = max_failures * per_address_factor
        self.max_successes = max(1, max_successes)
        self.max_entries = max(2, max_entries)
        self.clock = clock
        # key -> timestamps of counted attempts (oldest first, at most the
        # key's limit), ordered by last update: the front expires first.
        self._entries: OrderedDict[tuple, list[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def _limits(self, username: str, address: str, second_factor: bool = False):
        address = address_key(address)
        limits: tuple[tuple[tuple[str, ...], int], ...] = (
            (("user", username.lower(), address), self.max_failures), (("addr", address), self.per_address_max))
        if second_factor:
            # Whoever sends a code has the password: their wrong codes add up per user
            # from every address, or many addresses would each get their own guesses.
            limits += ((("2fa", username.lower()), self.per_address_max),)
        return limits

    def _sweep(self, now: float) -> None:
        """Drop entries whose newest attempt left the window; then the oldest beyond the cap."""
        cutoff = now - self.window
        entries = self._entries
        while entries:
            key, stamps = next(iter(entries.items()))
            if stamps and stamps[-1] > cutoff:
                break
            del entries[key]
        while len(entries) > self.max_entries:
            entries.popitem(last=False)

    def _recent(self, key, now: float) -> list[float]:
        stamps = self._entries.get(key)
        if stamps is None:
            return []
        cutoff = now - self.window
        while stamps and stamps[0] <= cutoff:
            stamps.pop(0)
        return stamps

    def retry_after(self, username: str, address: str, second_factor: bool = False) -> int:
        """Seconds until another attempt would be allowed; 0 if allowed now."""
        now = self.clock()
        wait = 0.0
        limits = self._limits(username, address, second_factor)
        for key, limit in limits + ((("ok",) + limits[1][0][1:], self.max_successes),):
            stamps = self._recent(key, now)
            if len(stamps) >= limit:
                wait = max(wait, stamps[-limit] + self.window - now)
        return max(1, math.ceil(wait)) if wait > 0 else 0

    def reserve(self, username: str, address: str, second_factor: bool = False) -> Reservation:
        """Count an attempt now, or raise TooManyRequests (with Retry-After).
        *second_factor*: a login's second step (a code or a key), counted per user too."""
        now = self.clock()
        self._sweep(now)
        wait = self.retry_after(username, address, second_factor)
        if wait:
            metrics.LOGINS.labels("throttled").inc()
            raise TooManyRequests("too many logins; try again later", retry_after=wait)
        limits = self._limits(username, address, second_factor)
        for key, _ in limits:
            self._add(key, now)
        self._sweep(now)
        return Reservation(self, tuple(key for key, _ in limits), now)

    def _add(self, key, now: float) -> None:
        stamps = self._entries.pop(key, None) or []
        stamps.append(now)
        self._entries[key] = stamps  # re-inserted: now the newest

    def _release(self, keys, stamp: float) -> None:
        for key in keys:
            stamps = self._entries.get(key)
            if stamps is None:
                continue
            try:
                stamps.remove(stamp)
            except ValueError:
                continue
            if not stamps:
                del self._entries[key]
