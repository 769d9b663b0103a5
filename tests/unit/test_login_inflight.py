"""Red team item 2: a tenant looping successful logins held the whole argon2
pool. One verification at a time per address (IPv6 /64) and per username
(appliance/core/auth/inflight.py), a per-address rate of successes
(LoginThrottle max_successes), and the pool's on_done hook that frees a key
only when the hashing thread really ends."""
from __future__ import annotations

import asyncio
import threading

import pytest

from appliance.core.auth.inflight import InFlight
from appliance.core.auth.passwords import HashPool
from appliance.core.auth.throttle import LoginThrottle, address_key
from appliance.errors import TooManyRequests


def test_one_verification_per_address_and_none_per_username_alone():
    guard = InFlight()
    mine = guard.keys("Mallory", "127.0.0.1")
    guard.acquire(mine)
    with pytest.raises(TooManyRequests):
        guard.acquire(guard.keys("alice", "127.0.0.1"))   # same address
    # attempts for mallory from elsewhere do not lock mallory out of her own login
    guard.acquire(guard.keys("mallory", "127.0.0.2"))
    guard.acquire(guard.keys("MALLORY", "10.0.0.1"))
    guard.release(mine)
    guard.acquire(guard.keys("mallory", "127.0.0.1"))
    assert len(guard) == 3


def test_ipv6_addresses_of_one_64_are_one_client():
    assert address_key("2001:db8:1:2::1") == address_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert address_key("192.0.2.7") == "192.0.2.7"
    guard = InFlight()
    guard.acquire(guard.keys("a", "2001:db8:1:2::1"))
    with pytest.raises(TooManyRequests):
        guard.acquire(guard.keys("b", "2001:db8:1:2::2"))


def test_successful_logins_are_rate_limited_per_address():
    clock = [0.0]
    throttle = LoginThrottle(max_failures=5, window=300, max_successes=3, clock=lambda: clock[0])
    for _ in range(3):
        with throttle.reserve("mallory", "127.0.0.1") as attempt:
            attempt.succeeded()
    with pytest.raises(TooManyRequests) as refused:
        throttle.reserve("mallory", "127.0.0.1")
    assert refused.value.retry_after > 0
    throttle.reserve("mallory", "127.0.0.2").cancel()  # another address is not affected
    clock[0] = 301
    throttle.reserve("mallory", "127.0.0.1").succeeded()


def test_pool_calls_on_done_when_the_job_really_ends():
    release = threading.Event()
    done = threading.Event()
    pool = HashPool(workers=1, queue=0)

    async def main():
        job = pool.submit(release.wait, 5, on_done=done.set)
        job.cancel()  # the caller gives up; the thread still runs
        await asyncio.sleep(0.05)
        assert not done.is_set()
        release.set()
        assert await asyncio.get_running_loop().run_in_executor(None, done.wait, 5)
    try:
        asyncio.run(main())
    finally:
        pool.close()
