"""The retry waits: exponential, jittered by a share of each delay, never past the cap."""

from __future__ import annotations

import pytest

from resgate.backoff import BACKOFF_FACTOR, JITTER_FRACTION, jittered_backoff
from resgate.config import DEFAULT_RECONNECT_MAX_DELAY
from resgate.messaging import FIRST_RECONNECT_DELAY, RECONNECT_BACKOFF
from resgate.workers import FIRST_RESTART_DELAY, MAX_RESTART_DELAY, RESTART_BACKOFF

ATTEMPTS = 40
SAMPLES = 200


@pytest.mark.parametrize("policy, first, cap", [
    (RECONNECT_BACKOFF, 0.1, 0.5),
    (RESTART_BACKOFF, 1.0, 30.0),
])
def test_delays_start_at_today_s_first_delay_and_stay_under_the_cap(policy, first, cap):
    for _ in range(SAMPLES):
        assert (1 - JITTER_FRACTION) * first <= policy(0) <= first
        delays = [policy(attempt) for attempt in range(ATTEMPTS)]
        assert all(0 < delay <= cap for delay in delays)
        assert min(delays[-5:]) >= (1 - JITTER_FRACTION) * cap


def test_the_named_bounds_are_the_old_tables_bounds():
    assert (FIRST_RECONNECT_DELAY, DEFAULT_RECONNECT_MAX_DELAY) == (0.1, 500)
    assert (FIRST_RESTART_DELAY, MAX_RESTART_DELAY) == (1.0, 30.0)


def test_without_jitter_each_delay_grows_by_the_factor_up_to_the_cap():
    policy = jittered_backoff(0.1, 5.0, rand=lambda: 0.0)
    assert [policy(n) for n in range(3)] == pytest.approx([0.1, 0.1 * BACKOFF_FACTOR, 0.1 * BACKOFF_FACTOR ** 2])
    assert policy(1000) == 5.0


def test_the_largest_jitter_takes_its_share_off_the_delay():
    policy = jittered_backoff(1.0, 30.0, rand=lambda: 1.0)
    assert policy(0) == pytest.approx(1 - JITTER_FRACTION)
    assert policy(1000) == pytest.approx(30.0 * (1 - JITTER_FRACTION))


def test_delays_differ_between_gateways():
    # Two gateways that lost NATS together do not retry in lockstep.
    assert len({RECONNECT_BACKOFF(3) for _ in range(SAMPLES)}) > 1
