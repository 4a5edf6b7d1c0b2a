"""The rate limiter's counting within one process, in-process with a clock of the test's (what the servers share
through the database is tested against real servers in tests/test_rate_limits.py)."""
import datetime

import pytest

from services.errors import RateLimited
from services.rate_limits import RateLimiter

USER = {"_id": "u1"}
ADDRESS = "10.0.0.1"


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


def limiter(clock, per_user=3, per_address=2, window=60):
    return RateLimiter(None, {"rate_limit_window_seconds": window, "rate_limit_per_user": per_user,
                              "rate_limit_per_address": per_address, "rate_limit_sync_seconds": 1}, clock)


def admitted(limits, user, count):
    """How many of ``count`` requests were admitted."""
    passed = 0
    for _ in range(count):
        try:
            limits.admit(user, ADDRESS, "api")
            passed += 1
        except RateLimited:
            pass
    return passed


def test_a_refusal_lasts_until_the_window_ends():
    limits = limiter(Clock(6000 + 45.5))
    admitted(limits, USER, 3)

    with pytest.raises(RateLimited) as refusal:
        limits.admit(USER, ADDRESS, "api")

    assert refusal.value.until == datetime.datetime.fromtimestamp(6060, datetime.timezone.utc)


def test_a_user_and_an_anonymous_caller_from_its_address_count_apart():
    limits = limiter(Clock(6000))

    assert (admitted(limits, None, 5), admitted(limits, USER, 5)) == (2, 3)


def test_the_next_window_starts_from_zero():
    clock = Clock(6059.9)
    limits = limiter(clock)
    admitted(limits, USER, 3)
    clock.now = 6060.0

    assert admitted(limits, USER, 5) == 3


def test_a_limit_of_zero_is_no_limit():
    limits = limiter(Clock(6000), per_user=0, per_address=0)

    assert (admitted(limits, None, 1000), admitted(limits, USER, 1000)) == (1000, 1000)
