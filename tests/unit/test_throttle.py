import sys

import pytest

from appliance.core.auth.throttle import LoginThrottle
from appliance.errors import TooManyRequests


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def fail(t: LoginThrottle, username: str, address: str) -> None:
    with t.reserve(username, address) as attempt:
        attempt.failed()


def test_locks_after_max_failures_and_reports_retry_after():
    clock = Clock()
    t = LoginThrottle(max_failures=3, window=60, clock=clock)
    for _ in range(3):
        assert t.retry_after("alice", "1.1.1.1") == 0
        fail(t, "alice", "1.1.1.1")
    wait = t.retry_after("alice", "1.1.1.1")
    assert 59 <= wait <= 60
    with pytest.raises(TooManyRequests) as refused:
        t.reserve("alice", "1.1.1.1")
    assert 59 <= refused.value.retry_after <= 60
    clock.t += 61
    assert t.retry_after("alice", "1.1.1.1") == 0


def test_attempts_in_flight_take_their_slots_before_verification():
    """The race of issue 11 item 3: every reservation is counted at once, so
    concurrent attempts cannot all pass the check before any has failed."""
    t = LoginThrottle(max_failures=3, window=60, clock=Clock())
    held = [t.reserve("alice", "1.1.1.1") for _ in range(3)]  # none verified yet
    with pytest.raises(TooManyRequests):
        t.reserve("alice", "1.1.1.1")
    for attempt in held:
        attempt.failed()
    with pytest.raises(TooManyRequests):
        t.reserve("alice", "1.1.1.1")


def test_an_attempt_that_was_never_verified_gives_its_slot_back():
    t = LoginThrottle(max_failures=2, window=60, clock=Clock())
    for _ in range(5):
        with t.reserve("alice", "1.1.1.1"):
            pass  # e.g. the hashing pool was full: neither failed() nor succeeded()
    assert t.retry_after("alice", "1.1.1.1") == 0
    assert len(t) == 0


def test_failures_elsewhere_do_not_lock_out_the_user():
    t = LoginThrottle(max_failures=3, window=60, clock=Clock())
    for _ in range(3):
        fail(t, "alice", "6.6.6.6")
    assert t.retry_after("alice", "6.6.6.6") > 0
    assert t.retry_after("alice", "1.1.1.1") == 0


def test_one_address_spraying_many_users_is_limited():
    t = LoginThrottle(max_failures=3, window=60, per_address_factor=2, clock=Clock())
    for i in range(6):
        fail(t, f"user{i}", "6.6.6.6")
    assert t.retry_after("someone-new", "6.6.6.6") > 0
    with pytest.raises(TooManyRequests):
        t.reserve("someone-new", "6.6.6.6")


def test_success_clears_the_pair_and_returns_the_address_slot():
    t = LoginThrottle(max_failures=3, window=60, per_address_factor=1, clock=Clock())
    fail(t, "alice", "1.1.1.1")
    fail(t, "alice", "1.1.1.1")
    with t.reserve("alice", "1.1.1.1") as attempt:
        attempt.succeeded()
    # The pair starts afresh; the address holds only the two failures.
    fail(t, "alice", "1.1.1.1")
    assert t.retry_after("alice", "1.1.1.1") > 0  # address: 3 of 3
    t2 = LoginThrottle(max_failures=3, window=60, clock=Clock())
    fail(t2, "alice", "1.1.1.1")
    fail(t2, "alice", "1.1.1.1")
    with t2.reserve("alice", "1.1.1.1") as attempt:
        attempt.succeeded()
    fail(t2, "alice", "1.1.1.1")
    fail(t2, "alice", "1.1.1.1")
    assert t2.retry_after("alice", "1.1.1.1") == 0


def test_expired_entries_are_swept_whoever_comes_next():
    """Entries used to go only when the same key came back: one-off usernames stayed forever."""
    clock = Clock()
    t = LoginThrottle(max_failures=3, window=60, clock=clock)
    for i in range(500):
        fail(t, f"once-{i}", f"10.0.{i // 250}.{i % 250}")
    assert len(t) == 1000  # a pair and an address each
    clock.t += 61
    fail(t, "someone", "1.1.1.1")
    assert len(t) == 2


def test_the_number_of_entries_is_capped():
    t = LoginThrottle(max_failures=3, window=3600, max_entries=100, clock=Clock())
    before = None
    for i in range(5000):
        fail(t, f"user-{i}", f"10.{i // 65536}.{i // 256 % 256}.{i % 256}")
        assert len(t) <= 100
        if i == 100:
            before = sys.getsizeof(t._entries)
    assert sys.getsizeof(t._entries) <= before
    # The newest entries are the ones kept: the latest pair is still counted.
    assert t._recent(("user", "user-4999", "10.0.19.135"), 1000.0)
