"""Bridges between asyncio coroutines and Deferreds for the test rig.

Nothing here imports the reactor at module level: conftest imports this
before pytest-twisted installs the asyncio reactor.
"""

from __future__ import annotations

import asyncio

from twisted.internet import defer, task

#: The bound on every wait in the rig; a test that needs longer says so.
WAIT_TIMEOUT = 5.0


def _reactor():
    from twisted.internet import reactor

    return reactor


def as_deferred(coro) -> defer.Deferred:
    """Run an asyncio coroutine on the reactor's loop; a Deferred of its result."""
    return defer.Deferred.fromFuture(asyncio.ensure_future(coro))


def within(d: defer.Deferred, seconds: float = WAIT_TIMEOUT) -> defer.Deferred:
    """``d``, failing with TimeoutError if it has not fired after ``seconds``."""
    return d.addTimeout(seconds, _reactor())


def sleep(seconds: float) -> defer.Deferred:
    return task.deferLater(_reactor(), seconds, lambda: None)


async def failure_of(d: defer.Deferred, seconds: float = WAIT_TIMEOUT) -> BaseException:
    """The exception ``d`` fails with (within ``seconds``); fails the test if it succeeds."""
    try:
        result = await within(d, seconds)
    except Exception as e:
        return e
    raise AssertionError(f"expected a failure, got {result!r}")


async def eventually(condition, seconds: float = WAIT_TIMEOUT) -> None:
    """Wait until ``condition()`` holds, polling the reactor."""
    clock = _reactor()
    deadline = clock.seconds() + seconds
    while not condition():
        if clock.seconds() > deadline:
            raise AssertionError("condition not met in time")
        await sleep(0.01)
