from appliance.core.throttle import LoginThrottle


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_locks_after_max_failures_and_reports_retry_after():
    clock = Clock()
    t = LoginThrottle(max_failures=3, window=60, clock=clock)
    for _ in range(3):
        assert t.retry_after("alice", "1.1.1.1") == 0
        t.failed("alice", "1.1.1.1")
    wait = t.retry_after("alice", "1.1.1.1")
    assert 59 <= wait <= 60
    clock.t += 61
    assert t.retry_after("alice", "1.1.1.1") == 0


def test_failures_elsewhere_do_not_lock_out_the_user():
    t = LoginThrottle(max_failures=3, window=60, clock=Clock())
    for _ in range(10):
        t.failed("alice", "6.6.6.6")
    assert t.retry_after("alice", "6.6.6.6") > 0
    assert t.retry_after("alice", "1.1.1.1") == 0


def test_one_address_spraying_many_users_is_limited():
    t = LoginThrottle(max_failures=3, window=60, per_address_factor=2, clock=Clock())
    for i in range(6):
        t.failed(f"user{i}", "6.6.6.6")
    assert t.retry_after("someone-new", "6.6.6.6") > 0


def test_success_clears_the_pair():
    t = LoginThrottle(max_failures=3, window=60, clock=Clock())
    t.failed("alice", "1.1.1.1")
    t.failed("alice", "1.1.1.1")
    t.succeeded("alice", "1.1.1.1")
    t.failed("alice", "1.1.1.1")
    t.failed("alice", "1.1.1.1")
    assert t.retry_after("alice", "1.1.1.1") == 0
