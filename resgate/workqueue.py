"""One FIFO of work for the whole gateway.

Everything the gateway does runs on the reactor thread. When one part hands
work to another (the cache tells a connection a resource loaded, a
connection asks the cache to unsubscribe), it enqueues a function instead of
calling in directly: the caller finishes first, so no part is re-entered
half-way through a change, and work runs in the order it was handed over.
Entry points (a NATS message, a client message, a timer) enqueue too; when
nothing is draining, the queue drains before ``enqueue`` returns, so all
that one NATS message causes is done before the next one is dispatched
(docs/design.md, invariant 1).
"""

from __future__ import annotations

import collections
from typing import Callable

from twisted.logger import Logger

log = Logger(namespace="resgate.work")


class WorkQueue:
    """Runs handed-over work in order, never re-entrantly."""

    __slots__ = ("_queue", "_draining")

    def __init__(self) -> None:
        self._queue: collections.deque[Callable[[], None]] = collections.deque()
        self._draining = False

    def enqueue(self, work: Callable[[], None]) -> None:
        """Run ``work`` after what is running and queued now (at once when idle)."""
        self._queue.append(work)
        if self._draining:
            return
        self._draining = True
        queue = self._queue
        try:
            while queue:
                try:
                    queue.popleft()()
                except Exception:
                    log.failure("Unexpected error in gateway work")
        finally:
            self._draining = False
