"""Red team: the login throttle's per-address limit against IPv6 clients.

LoginThrottle keys the per-address limit on the exact address string. A client
on IPv6 normally holds a whole /64 (2^64 addresses) and picks a fresh source
address per connection, so every attempt gets fresh pair and address counters:
unlimited password guessing against any user. Reachable when the gateway binds
an IPv6 address (http_host "::"); the playbook's default 0.0.0.0 does not.
Failed on main at b9a56f9.
"""
import pytest

from appliance.core.auth.throttle import LoginThrottle
from appliance.errors import TooManyRequests


def test_one_ipv6_prefix_shares_one_per_address_limit():
    throttle = LoginThrottle(max_failures=5, window=300)  # 20 per address
    verified = 0
    with pytest.raises(TooManyRequests):
        for i in range(1, 200):
            with throttle.reserve("admin", f"2001:db8:1:2::{i:x}") as attempt:
                verified += 1
                attempt.failed()
    assert verified <= 20, verified

