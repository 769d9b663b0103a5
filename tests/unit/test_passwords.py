"""The argon2 pool: bounded, refuses at once when full, frees a slot only when its job ends."""
import asyncio
import os
import threading
import time

import pytest

from appliance import config
from appliance.core.auth import passwords
from appliance.core.auth.passwords import (
    HASH_NICENESS,
    HashPool,
    hash_password,
    verify_password,
)
from appliance.errors import TooManyRequests


def test_hash_and_verify():
    h = hash_password("pw-1")
    assert verify_password(h, "pw-1") and not verify_password(h, "pw-2")
    assert not verify_password(None, "pw-1") and not verify_password(h, "x" * 2000)


def test_the_cost_of_new_hashes_is_configured_and_old_hashes_still_verify():
    production = hash_password("pw-1")
    assert "$m=65536,t=3,p=4$" in production   # config's defaults: RFC 9106's second choice
    defaults = config.load(env={"APPLIANCE_CONFIG": "/dev/null"})
    assert (defaults.password_hash_memory_kib, defaults.password_hash_time_cost) == (65536, 3)
    try:
        passwords.configure(memory_kib=1024, time_cost=1)
        cheap = hash_password("pw-1")
        assert "$m=1024,t=1,p=4$" in cheap
        assert verify_password(cheap, "pw-1") and verify_password(production, "pw-1")
        assert not verify_password(None, "pw-1") and not verify_password(cheap, "pw-2")
        assert "$m=1024,t=1,p=4$" in passwords._dummy_hash   # unknown users cost what known ones do
    finally:
        passwords.configure(defaults.password_hash_memory_kib, defaults.password_hash_time_cost)
    with pytest.raises(ValueError, match="password_hash_memory_kib"):
        config.load(env={"APPLIANCE_CONFIG": "/dev/null", "APPLIANCE_PASSWORD_HASH_MEMORY_KIB": "8"})


def test_a_full_pool_refuses_at_once_and_frees_slots_when_jobs_end():
    pool = HashPool(workers=1, queue=1)
    release = threading.Event()

    async def main():
        first = pool.submit(release.wait, 10)
        second = pool.submit(release.wait, 10)
        started = time.monotonic()
        with pytest.raises(TooManyRequests) as refused:
            pool.submit(release.wait, 10)
        assert time.monotonic() - started < 0.1 and refused.value.retry_after == 1
        # A caller that gives up does not free a thread that is still busy.
        first.cancel()
        await asyncio.sleep(0.05)
        with pytest.raises(TooManyRequests):
            pool.submit(release.wait, 10)
        release.set()
        assert await second is True
        await asyncio.sleep(0.05)
        assert await pool.run(lambda: "free again") == "free again"
    try:
        asyncio.run(main())
    finally:
        release.set()
        pool.close()


def test_pool_threads_run_at_a_lower_priority():
    pool = HashPool(workers=1, queue=0)

    def niceness():
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    mine = niceness()
    try:
        assert asyncio.run(pool.run(niceness)) == max(HASH_NICENESS, mine)
        assert niceness() == mine  # the caller's thread is untouched
    finally:
        pool.close()
