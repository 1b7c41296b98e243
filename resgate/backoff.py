"""Waits between attempts that keep failing: reconnecting to NATS, restarting a worker.

Twisted's exponential ``backoffPolicy``, with a random share of each delay
taken off, so that many gateways that lost the same NATS server do not all
try again at the same instant. Twisted's own jitter adds up to a second
whatever the delay, which would swamp a first reconnect of 0.1 s; this one
is proportional to the delay and never goes past the cap.
"""

from __future__ import annotations

import random
from typing import Callable

from twisted.application.internet import backoffPolicy

#: How much each delay grows from one failed attempt to the next.
BACKOFF_FACTOR = 2.0
#: The largest share of a delay taken off at random.
JITTER_FRACTION = 0.25

RetryPolicy = Callable[[int], float]


def jittered_backoff(initial: float, cap: float, *,
                     rand: Callable[[], float] = random.random) -> RetryPolicy:
    """``policy(attempt)``: seconds to wait before retry ``attempt`` (0 first).

    The delay is ``initial * BACKOFF_FACTOR ** attempt``, at most ``cap``,
    less a random share of up to JITTER_FRACTION of it.
    """
    base = backoffPolicy(initial, cap, BACKOFF_FACTOR, jitter=lambda: 0.0)

    def policy(attempt: int) -> float:
        return base(attempt) * (1.0 - JITTER_FRACTION * rand())

    return policy
