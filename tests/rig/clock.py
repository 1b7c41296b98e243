"""A reactor whose time is a ``task.Clock``: timers wait for the test, sockets do not.

Given to a GatewayService (``gateway_factory(reactor=...)``) with the memory
bus, it lets a test step over the gateway's waits (the unsubscribe delay,
request timeouts, reconnect delays) by advancing the clock instead of
sleeping, while WebSocket clients stay real. A call with a positive delay
waits for ``clock.advance``; a zero delay means "on the next turn" (Twisted's
ports use it to close connections) and runs on the real reactor.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet import task
from twisted.internet.interfaces import IDelayedCall


class ClockedReactor:
    """The real reactor, with ``callLater`` (positive delays) and ``seconds`` on a task.Clock."""

    def __init__(self, clock: task.Clock | None = None, reactor: Any = None) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.clock = clock if clock is not None else task.Clock()
        self._reactor = reactor

    def callLater(self, delay: float, f: Callable[..., Any], *args: Any, **kwargs: Any) -> IDelayedCall:
        if delay <= 0:
            return self._reactor.callLater(0, f, *args, **kwargs)
        return self.clock.callLater(delay, f, *args, **kwargs)

    def seconds(self) -> float:
        return self.clock.seconds()

    def getDelayedCalls(self) -> list[IDelayedCall]:
        return self.clock.getDelayedCalls()

    def advance(self, seconds: float) -> None:
        """Move time on: every timer due by then runs, in order."""
        self.clock.advance(seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reactor, name)
