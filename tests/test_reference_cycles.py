"""What serving a client makes is freed by reference counting, not left to the cyclic GC.

Every object in a reference cycle lives until a collection finds it, and
every collection walks all the objects the collector tracks: with thousands
of connections open, each young generation's pass takes tens of
milliseconds, and lands in whatever the gateway does then (bench/README.md).
A subscription loading its access once made two closures that referred to
each other, a cycle for every connection that subscribed.
"""

from __future__ import annotations

import gc
from typing import Any, Callable

from resgate.cache.throttle import Throttle
from resgate.codec import Access
from resgate.subscription import Subscription


class Owner:
    """The part of a connection a subscription asks for its access."""

    cid = "c0"

    def __init__(self) -> None:
        self.token: Any = None
        self.asked: list[Callable[[Access, Any], None]] = []

    def expand_cid(self, rid: str) -> str:
        return rid

    def request_access(self, sub: Subscription, callback: Callable[[Access, Any], None]) -> None:
        self.asked.append(callback)


def cyclic_garbage(run: Callable[[], None]) -> int:
    """How many unreachable objects the collector finds after ``run``, with it off meanwhile."""
    gc.collect()
    gc.disable()
    try:
        run()
        return gc.collect()
    finally:
        gc.enable()


def test_loading_access_makes_no_cycle() -> None:
    answers: list[Any] = []

    def run() -> None:
        owner = Owner()
        sub = Subscription(owner, "test.model", None)  # type: ignore[arg-type]  # Owner is the part used
        sub.can_get(answers.append)
        assert len(owner.asked) == 1
        owner.asked.pop()(Access(get=True), None)

    assert cyclic_garbage(run) == 0
    assert answers == [None]


def test_an_answer_for_an_old_token_asks_again_without_a_cycle() -> None:
    answers: list[Any] = []
    throttle = Throttle(1)

    def run() -> None:
        owner = Owner()
        sub = Subscription(owner, "test.model", throttle)  # type: ignore[arg-type]
        sub.can_call("set", answers.append)
        sub.can_get(answers.append)
        owner.token = {"user": "new"}
        owner.asked.pop()(Access(get=True, call="*"), None)  # spoke for the old token
        assert answers == [] and len(owner.asked) == 1
        owner.asked.pop()(Access(get=True), None)

    assert cyclic_garbage(run) == 0
    assert answers == [Access(get=True).can_call("set"), None]
