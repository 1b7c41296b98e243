"""Running resservice tests: asyncio test bodies on the reactor's loop, over either bus.

resservice is asyncio code; pytest-twisted drives Deferreds. ``on_asyncio``
turns an ``async def`` test into one that runs on the loop the reactor runs
on, bounded by ``TEST_WAIT``.
"""

from __future__ import annotations

import functools
from typing import Any, Awaitable, Callable

from tests.rig.aio import as_deferred, within

#: The bound on one resservice test body.
TEST_WAIT = 30.0


def on_asyncio(test: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    """Run the coroutine test on asyncio; pytest-twisted waits for the Deferred it returns."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> Any:
        return within(as_deferred(test(*args, **kwargs)), TEST_WAIT)

    return run
