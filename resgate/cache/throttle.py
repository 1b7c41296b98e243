"""A bound on requests in flight (the reset and reference throttles)."""

from __future__ import annotations

import collections
from typing import Callable


class Throttle:
    """Limits how many requests are in flight (reset and reference throttles)."""

    __slots__ = ("limit", "running", "waiting")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.running = 0
        self.waiting: collections.deque[Callable[[], None]] = collections.deque()

    def add(self, start: Callable[[], None]) -> None:
        if self.running < self.limit:
            self.running += 1
            start()
        else:
            self.waiting.append(start)

    def done(self) -> None:
        if self.waiting:
            self.waiting.popleft()()
        else:
            self.running -= 1

