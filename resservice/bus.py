"""The message bus a service talks over: NATS in production, an in-memory one in tests.

A Bus delivers each message to its subscriptions in the order published;
``MemoryBus`` does so within one process, with NATS's subject wildcards and
queue groups, so a service can be tested (and embedded) without a nats-server.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import itertools
from typing import Callable, Protocol

#: NATS's default max_payload: what a nats-server accepts unless configured otherwise.
DEFAULT_MAX_PAYLOAD = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Message:
    """A message as received: ``reply`` is where a request wants its answer."""

    subject: str
    data: bytes
    reply: str | None = None


Callback = Callable[[Message], None]


class Subscription(Protocol):
    async def unsubscribe(self) -> None: ...


class Bus(Protocol):
    """What a Service needs from a message bus."""

    #: The largest payload the bus carries.
    max_payload: int

    async def subscribe(self, subject: str, callback: Callback, queue: str = "") -> Subscription:
        """Call ``callback`` with each message on ``subject`` (wildcards allowed), in order."""

    async def publish(self, subject: str, data: bytes, reply: str | None = None) -> None:
        """Send a message; messages of one publisher arrive in the order published."""

    async def request(self, subject: str, data: bytes, timeout: float) -> Message:
        """Send a request and wait ``timeout`` seconds for its first reply."""

    def new_inbox(self) -> str:
        """A subject no one else uses, for replies."""

    async def flush(self) -> None:
        """Wait until everything published so far has reached the bus."""

    async def close(self) -> None:
        """Close the connection."""


class NoResponders(Exception):
    """A request on a subject no one subscribes to."""


def subject_matches(pattern: str, subject: str) -> bool:
    """Whether a subscription to ``pattern`` receives ``subject``."""
    tokens = subject.split(".")
    parts = pattern.split(".")
    for i, token in enumerate(parts):
        if token == ">":
            return len(tokens) > i
        if i >= len(tokens) or token not in ("*", tokens[i]):
            return False
    return len(parts) == len(tokens)


class _MemorySubscription:
    def __init__(self, bus: "MemoryBus", subject: str, callback: Callback, queue: str) -> None:
        self.bus = bus
        self.subject = subject
        self.callback = callback
        self.queue = queue
        self.active = True

    async def unsubscribe(self) -> None:
        self.active = False
        self.bus._remove(self)


class MemoryBus:
    """A bus inside one process: NATS semantics (wildcards, queue groups, inboxes), no server.

    ``connect()`` gives each party a connection of its own, all on the same bus;
    messages are delivered from the event loop, in the order published.
    """

    def __init__(self, max_payload: int = DEFAULT_MAX_PAYLOAD) -> None:
        self.max_payload = max_payload
        self._subs: list[_MemorySubscription] = []
        self._queue_turns: dict[tuple[str, str], itertools.count] = {}
        self._inboxes = itertools.count(1)
        self._pending: collections.deque[Message] = collections.deque()
        self._delivering = False

    def connect(self) -> "MemoryBus":
        """A connection to this bus (this bus itself: every connection shares one ordered stream)."""
        return self

    def _remove(self, sub: _MemorySubscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)

    async def subscribe(self, subject: str, callback: Callback, queue: str = "") -> _MemorySubscription:
        sub = _MemorySubscription(self, subject, callback, queue)
        self._subs.append(sub)
        return sub

    async def publish(self, subject: str, data: bytes, reply: str | None = None) -> None:
        self.publish_nowait(subject, data, reply)

    def publish_nowait(self, subject: str, data: bytes, reply: str | None = None) -> None:
        """Publish without awaiting; delivery still happens later, from the loop."""
        if len(data) > self.max_payload:
            raise ValueError(f"maximum payload exceeded: {len(data)} > {self.max_payload} bytes")
        self._pending.append(Message(subject, bytes(data), reply))
        if not self._delivering:
            self._delivering = True
            asyncio.get_running_loop().call_soon(self._deliver)

    def _deliver(self) -> None:
        try:
            while self._pending:
                message = self._pending.popleft()
                for sub in self._receivers(message.subject):
                    sub.callback(message)
        finally:
            self._delivering = False

    def _receivers(self, subject: str) -> list[_MemorySubscription]:
        plain: list[_MemorySubscription] = []
        groups: dict[str, list[_MemorySubscription]] = {}
        for sub in self._subs:
            if sub.active and subject_matches(sub.subject, subject):
                if sub.queue:
                    groups.setdefault(sub.queue, []).append(sub)
                else:
                    plain.append(sub)
        for queue, members in groups.items():
            # Round robin within a queue group: each member takes its turn.
            turn = next(self._queue_turns.setdefault((subject, queue), itertools.count()))
            plain.append(members[turn % len(members)])
        return plain

    async def request(self, subject: str, data: bytes, timeout: float) -> Message:
        if not self._receivers(subject):
            raise NoResponders(f"no responders on {subject}")
        inbox = self.new_inbox()
        answer: asyncio.Future[Message] = asyncio.get_running_loop().create_future()

        def received(message: Message) -> None:
            if not answer.done():
                answer.set_result(message)

        sub = await self.subscribe(inbox, received)
        try:
            await self.publish(subject, data, reply=inbox)
            return await asyncio.wait_for(answer, timeout)
        finally:
            await sub.unsubscribe()

    def new_inbox(self) -> str:
        return f"_INBOX.mem.{next(self._inboxes)}"

    async def flush(self) -> None:
        while self._pending or self._delivering:
            await asyncio.sleep(0)

    async def close(self) -> None:
        await self.flush()
