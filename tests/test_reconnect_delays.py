"""Reconnect waits on a fake clock: under the cap, and not in step across gateways.

The cap (``reconnectMaxDelay``) is what bounds how late a gateway notices
that NATS is back, however long it was gone; the jitter keeps a fleet that
lost the same server from retrying at the same instants.
"""

from __future__ import annotations

import random

from twisted.internet import defer, task

from resgate.config import DEFAULT_RECONNECT_MAX_DELAY
from resgate.messaging import MessagingService, reconnect_backoff

#: Failed attempts watched: far past the point where the waits reach the cap.
ATTEMPTS = 60
#: The cap under test, in seconds: the default ``reconnectMaxDelay``.
CAP = DEFAULT_RECONNECT_MAX_DELAY / 1000


class RefusedBus:
    """A bus whose server refuses every connect after the first, as a down nats-server does."""

    def __init__(self, clock: task.Clock) -> None:
        self.clock = clock
        self.on_lost = None
        self.attempts: list[float] = []

    def connect(self) -> defer.Deferred[None]:
        self.attempts.append(self.clock.seconds())
        if len(self.attempts) == 1:
            return defer.succeed(None)
        return defer.fail(ConnectionRefusedError("connection refused"))

    def close(self) -> defer.Deferred[None]:
        return defer.succeed(None)


def waits_of_one_gateway(seed: int) -> list[float]:
    clock = task.Clock()
    bus = RefusedBus(clock)
    service = MessagingService(bus, clock, lambda reason: None, lambda: None,
                               retry_delay=reconnect_backoff(CAP, rand=random.Random(seed).random))
    service.startService()
    bus.on_lost("connection lost")
    while len(bus.attempts) < ATTEMPTS + 1:
        clock.advance(min(call.getTime() for call in clock.getDelayedCalls()) - clock.seconds())
    service.stopService()
    times = bus.attempts[1:]
    lost_at = bus.attempts[0]
    return [later - earlier for earlier, later in zip([lost_at, *times], times)]


def test_every_wait_stays_under_the_cap() -> None:
    waits = waits_of_one_gateway(seed=1)
    assert len(waits) == ATTEMPTS
    assert all(0 < wait <= CAP for wait in waits)
    assert waits[0] <= 0.1


def test_two_gateways_do_not_retry_in_step() -> None:
    first, second = waits_of_one_gateway(seed=1), waits_of_one_gateway(seed=2)
    assert all(a != b for a, b in zip(first, second))
    assert all(wait <= CAP for wait in first + second)


def test_a_cap_below_the_first_wait_bounds_the_first_wait_too() -> None:
    policy = reconnect_backoff(0.05, rand=lambda: 0.0)
    assert [policy(n) for n in range(3)] == [0.05, 0.05, 0.05]
