"""PerUserCap: the per-user count behind terminals, container logs, /sse/health and /sse/logs."""
from __future__ import annotations

import pytest

from appliance.core.streamcap import PerUserCap
from appliance.errors import TooManyRequests


def test_cap_counts_each_user_apart_and_frees_on_release():
    cap = PerUserCap(2, "at most {limit} things per user")
    cap.claim("a")
    cap.claim("a")
    with pytest.raises(TooManyRequests, match="at most 2 things per user"):
        cap.claim("a")
    cap.claim("b")   # another user's count
    cap.release("a")
    cap.claim("a")
    assert cap.open == {"a": 2, "b": 1}
    for user in ("a", "a", "b"):
        cap.release(user)
    assert cap.open == {}   # no entry left behind per user ever seen


def test_hold_releases_when_the_block_ends_even_on_error():
    cap = PerUserCap(1, "at most {limit}")
    with pytest.raises(RuntimeError), cap.hold("a"):
        assert cap.open == {"a": 1}
        raise RuntimeError
    assert cap.open == {}
    with cap.hold("a"), pytest.raises(TooManyRequests), cap.hold("a"):
        pass


def test_zero_means_unlimited():
    cap = PerUserCap(0, "never")
    for _ in range(100):
        cap.claim("a")
    assert cap.open["a"] == 100
