"""Password hashing with argon2id (argon2-cffi): slow, salted, parameters in the hash.

Hashing runs on its own small thread pool (``HashPool``), never on the event
loop's default executor: one argon2 verification takes 64 MiB and most of a
CPU for a fraction of a second, and anonymous logins must not queue in front
of storage's disk work. The pool admits at most ``workers + queue`` jobs; the
next one is refused at once (429 with Retry-After) instead of waiting. Its
threads run at a lower CPU priority, so a burst of logins takes the CPU only
when nothing else wants it.
"""
from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from appliance.errors import TooManyRequests

_hasher = PasswordHasher()
# Verified against when the user does not exist, so both failures cost the same (warm_up() makes it).
_dummy_hash: str | None = None

MAX_PASSWORD_BYTES = 1024
# Niceness of the hashing threads (and of the lane threads libargon2 starts
# from them): when CPU is short, the core's other work goes first.
HASH_NICENESS = 10


def configure(memory_kib: int, time_cost: int) -> None:
    """The argon2id cost of hashes made from now on (config password_hash_*)."""
    global _hasher, _dummy_hash
    _hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib)
    _dummy_hash = None


def warm_up() -> None:
    """Make the dummy hash now (the core at start), so that the first login of an unknown
    user takes no longer than the next ones."""
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = _hasher.hash("not a password of anyone")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        return False
    if not password_hash:
        warm_up()
    try:
        return _hasher.verify(password_hash or _dummy_hash or "", password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _lower_priority() -> None:
    # Linux: niceness is per thread (the tid names it), inherited by threads it starts.
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, max(HASH_NICENESS, os.getpriority(os.PRIO_PROCESS, tid)))
    except OSError:
        pass


class HashPool:
    """A bounded pool for argon2: ``workers`` threads, ``queue`` more jobs may wait."""

    def __init__(self, workers: int = 2, queue: int = 4):
        self.workers = max(1, workers)
        self.capacity = self.workers + max(0, queue)
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="argon2",
                                            initializer=_lower_priority)
        # Released when the job really ends (a cancelled caller does not free
        # a thread that is still hashing), hence a thread-safe semaphore.
        self._slots = threading.BoundedSemaphore(self.capacity)

    def submit(self, fn, *args, on_done=None) -> asyncio.Future:
        """Start *fn* on the pool (await the result), or raise TooManyRequests at once.
        *on_done()* runs (in the pool's thread) when the job really ends, even if
        the awaiting caller was cancelled; not at all when refused here."""
        if not self._slots.acquire(blocking=False):
            raise TooManyRequests("too many logins in progress; try again shortly", retry_after=1)
        try:
            job = self._executor.submit(fn, *args)
        except BaseException:
            self._slots.release()
            raise

        def done(_) -> None:
            self._slots.release()
            if on_done is not None:
                on_done()
        job.add_done_callback(done)
        return asyncio.wrap_future(job)

    async def run(self, fn, *args):
        return await self.submit(fn, *args)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
