"""An in-memory, in-order message bus: the gateway's ``resgate.bus.Bus`` and the services' end of it.

A ``MemoryBroker`` plays nats-server inside the test process. The gateway
connects through a ``MemoryBus`` (``broker.bus()``), which implements
``resgate.bus.Bus``; the rig's services connect through a
``MemoryConnection`` (``broker.connect_service()``), which offers the subset
of nats-py's client API they use (``subscribe`` with a callback or
``next_msg``, ``publish``, ``flush``, ``new_inbox``, ``close``; messages
with ``subject``, ``data``, ``reply``, ``headers`` and ``respond``). So ``FakeService``
and the scenario helpers run unchanged on either bus.

What it keeps of NATS, because the gateway relies on it:

* one order: every message reaches its subscribers in the order it was
  published, across all subscriptions and publishers;
* no re-entrancy: delivery happens on a later turn of the broker's clock,
  never inside ``publish`` or ``send_request``;
* a message goes to the subscriptions that exist when it is published (as
  the server routes on receipt), and not to one unsubscribed meanwhile;
* ``*`` matches one token, a last ``>`` one or more;
* a request nobody subscribes to fails with system.notFound (NATS's "no
  responders"), in order with the other messages; an unanswered one fails
  with system.timeout after ``request_timeout`` on the bus's clock, so a
  ``task.Clock`` drives it; a pre-response (``timeout:"ms"``) restarts the
  wait with its own timeout;
* nats-server's limits on payload size and on the length of a subject.

What it adds: a test can ``lose`` the gateway's connection (``on_lost``
follows), keep it from connecting again (``reachable``), and see every
subscribed subject (``subjects``).
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import itertools
import re
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from resgate import errors
from resgate.bus import MessageHandler, Respond

# Under resgate.*, as the NATS adapter logs: the logged_errors fixture counts what it logs.
log = Logger(namespace="resgate.memorybus")

#: Seconds a request waits for its reply by default (Resgate's default).
REQUEST_TIMEOUT = 3.0
#: nats-server's default max_payload (bytes).
MAX_PAYLOAD = 1024 * 1024
#: nats-server's default max_control_line: the longest PUB or SUB line it takes (bytes).
MAX_CONTROL_LINE = 4096
#: The room a PUB line takes beside its subject and reply ("PUB  <size>"), bounded above.
_PUB_OVERHEAD = 16
#: How long a service's ``next_msg`` waits by default (seconds), as nats-py's.
NEXT_MSG_TIMEOUT = 1.0

NOT_CONNECTED = errors.internal_error("not connected to the memory bus")
#: The headers of the reply NATS sends when nobody subscribes to a request's subject.
NO_RESPONDERS = {"Status": "503"}

# A reply whose first byte is an ASCII letter is a pre-response (Resgate's rule).
_A, _Z = ord("a"), ord("z")
_PRE_RESPONSE_TIMEOUT = re.compile(rb'(?:^| )timeout:"([+-]?[0-9]+)"')
_SUBJECT = re.compile(r"[^ \t\r\n.]+(?:\.[^ \t\r\n.]+)*")
_PATTERN = re.compile(r"(?:[^ \t\r\n.*>]+|\*)(?:\.(?:[^ \t\r\n.*>]+|\*))*(?:\.>)?|>")

#: NATS headers of a message (a request's trace context, a status), None for a message without.
Headers = dict[str, str] | None

#: ``deliver(subject, payload, reply, headers)`` of one subscription.
Deliver = Callable[[str, bytes, str, Headers], None]


class BusUnreachable(Exception):
    """The memory bus refused a connection (the test made it unreachable); the message is one line."""


def _default_clock() -> IReactorTime:
    from twisted.internet import reactor

    return reactor


def check_subject(subject: str, wildcards: bool = False) -> None:
    """Refuse what nats-server would reject: empty tokens, whitespace, misplaced wildcards."""
    if (_PATTERN if wildcards else _SUBJECT).fullmatch(subject) is None:
        raise errors.internal_error(f"invalid NATS subject {subject!r:.80}")


def matches(pattern: str, subject: str) -> bool:
    """Whether ``subject`` is one ``pattern`` (with ``*`` and ``>`` wildcards) stands for."""
    wanted = pattern.split(".")
    tokens = subject.split(".")
    for i, token in enumerate(wanted):
        if token == ">":
            return len(tokens) > i
        if i >= len(tokens) or (token != "*" and token != tokens[i]):
            return False
    return len(tokens) == len(wanted)


@dataclass(eq=False)
class _Subscription:
    sid: int
    subject: str
    deliver: Deliver
    active: bool = True


class MemoryBroker:
    """The in-memory nats-server: routes every published message, in one order.

    ``clock`` is what delivery waits on (the reactor by default; a
    ``task.Clock`` in unit tests, where ``clock.advance(0)`` delivers).
    """

    def __init__(self, clock: IReactorTime | None = None) -> None:
        self.clock = clock if clock is not None else _default_clock()
        self._exact: dict[str, list[_Subscription]] = {}
        self._wildcard: list[_Subscription] = []
        self._sids = itertools.count(1)
        self._inboxes = itertools.count(1)
        self._queue: collections.deque[tuple[_Subscription, str, bytes, str, Headers]] = collections.deque()
        self._drain_call: IDelayedCall | None = None

    def bus(self, *, request_timeout: float = REQUEST_TIMEOUT, clock: IReactorTime | None = None) -> MemoryBus:
        """A gateway's connection (not yet connected); its timeouts run on ``clock`` (the broker's)."""
        return MemoryBus(self, request_timeout=request_timeout, clock=clock)

    def connect_service(self) -> MemoryConnection:
        """A service's connection, connected."""
        return MemoryConnection(self)

    def subjects(self) -> list[str]:
        """Every subject subscribed to now, by any connection, in subscription order."""
        subs = [s for group in self._exact.values() for s in group] + self._wildcard
        return [s.subject for s in sorted(subs, key=lambda s: s.sid)]

    def event_subscriptions(self) -> set[str]:
        """Resource names with an ``event.<name>.*`` (or ``.>``) subscription, as MonitoredNatsServer."""
        return {s[len("event."):-2] for s in self.subjects() if s.startswith("event.") and s[-2:] in (".*", ".>")}

    def new_inbox(self) -> str:
        return f"_INBOX.memory{next(self._inboxes)}"

    @property
    def pending(self) -> int:
        """Messages published but not delivered yet."""
        return len(self._queue)

    # -- for the connections

    def subscribe(self, subject: str, deliver: Deliver) -> _Subscription:
        sub = _Subscription(next(self._sids), subject, deliver)
        if "*" in subject.split(".") or subject.split(".")[-1] == ">":
            self._wildcard.append(sub)
        else:
            self._exact.setdefault(subject, []).append(sub)
        return sub

    def unsubscribe(self, sub: _Subscription) -> None:
        if not sub.active:
            return
        sub.active = False
        if sub in self._wildcard:
            self._wildcard.remove(sub)
            return
        group = self._exact.get(sub.subject, [])
        if sub in group:
            group.remove(sub)
        if not group:
            self._exact.pop(sub.subject, None)

    def publish(self, subject: str, payload: bytes, reply: str = "", headers: Headers = None) -> bool:
        """Queue ``payload`` and ``headers`` for every subscription matching now; False when there was none."""
        targets = list(self._exact.get(subject, ()))
        targets.extend(s for s in self._wildcard if matches(s.subject, subject))
        if len(targets) > 1:
            targets.sort(key=lambda s: s.sid)
        for sub in targets:
            self._enqueue(sub, subject, payload, reply, headers)
        return bool(targets)

    def answer_no_responders(self, inbox: _Subscription, subject: str) -> None:
        """Queue NATS's "no responders" status for a request's inbox, in order with the rest."""
        self._enqueue(inbox, subject, b"", "", dict(NO_RESPONDERS))

    def _enqueue(self, sub: _Subscription, subject: str, payload: bytes, reply: str, headers: Headers) -> None:
        self._queue.append((sub, subject, payload, reply, headers))
        if self._drain_call is None:
            self._drain_call = self.clock.callLater(0, self._drain)

    def _drain(self) -> None:
        # What is published while delivering waits for the next turn, as it would on a socket.
        self._drain_call = None
        queue = self._queue
        for _ in range(len(queue)):
            sub, subject, payload, reply, headers = queue.popleft()
            if not sub.active:
                continue
            try:
                sub.deliver(subject, payload, reply, headers)
            except Exception:
                log.failure("Memory bus message handler failed for {subject}", subject=subject)
        if queue and self._drain_call is None:
            self._drain_call = self.clock.callLater(0, self._drain)


def _check_sizes(subject: str, reply: str, payload: bytes) -> None:
    if len(payload) > MAX_PAYLOAD:
        raise errors.internal_error(
            f"payload of {len(payload)} bytes exceeds NATS max_payload of {MAX_PAYLOAD} bytes")
    if len(subject) + len(reply) + _PUB_OVERHEAD > MAX_CONTROL_LINE:
        raise errors.SUBJECT_TOO_LONG


@dataclass(eq=False)
class _Request:
    token: int
    respond: Respond
    timer: IDelayedCall


class MemoryBusSubscription:
    """A gateway's subscription on the memory bus (a ``resgate.bus.BusSubscription``)."""

    def __init__(self, bus: MemoryBus, subject: str, handler: MessageHandler) -> None:
        self.subject = subject
        self._bus = bus
        self._handler = handler
        self._sub = bus.broker.subscribe(subject, self._deliver)

    def unsubscribe(self) -> None:
        self._bus.broker.unsubscribe(self._sub)
        self._bus._subscriptions.discard(self)

    def _deliver(self, subject: str, payload: bytes, reply: str, headers: Headers) -> None:
        self._handler(subject, payload)


class MemoryBus:
    """The gateway's connection to a MemoryBroker: ``resgate.bus.Bus`` in memory.

    Like the NATS one, it does not reconnect by itself: after ``lose`` the
    owner connects again, which succeeds while ``reachable`` holds.
    """

    def __init__(self, broker: MemoryBroker, *, request_timeout: float = REQUEST_TIMEOUT,
                 clock: IReactorTime | None = None) -> None:
        self.broker = broker
        self.request_timeout = request_timeout
        self.on_lost: Callable[[str], None] | None = None
        #: While False, ``connect`` fails with BusUnreachable.
        self.reachable = True
        self._clock = clock if clock is not None else broker.clock
        self._connected = False
        self._inbox: _Subscription | None = None
        self._inbox_prefix = ""
        self._subscriptions: set[MemoryBusSubscription] = set()
        self._requests: dict[int, _Request] = {}
        self._last_token = 0

    @property
    def is_connected(self) -> bool:
        return self._connected

    @property
    def server(self) -> str | None:
        return "memory" if self._connected else None

    @property
    def pending_requests(self) -> int:
        """Requests sent and not answered, failed or forgotten yet."""
        return len(self._requests)

    def connect(self) -> Deferred[None]:
        if self._connected:
            return defer.fail(BusUnreachable("already connected to the memory bus"))
        if not self.reachable:
            return defer.fail(BusUnreachable("cannot connect to the memory bus: it is unreachable"))
        self._connected = True
        self._inbox_prefix = self.broker.new_inbox() + "."
        self._inbox = self.broker.subscribe(self._inbox_prefix + "*", self._on_reply)
        return defer.succeed(None)

    def send_request(self, subject: str, payload: bytes, respond: Respond,
                     headers: Mapping[str, str] | None = None) -> int:
        if not self._connected:
            respond(None, NOT_CONNECTED)
            return 0
        try:
            check_subject(subject)
            _check_sizes(subject, self._inbox_prefix + str(self._last_token + 1), payload)
        except errors.ResError as e:
            respond(None, e)
            return 0
        self._last_token += 1
        token = self._last_token
        inbox = f"{self._inbox_prefix}{token}"
        timer = self._clock.callLater(self.request_timeout, self._time_out, token)
        self._requests[token] = _Request(token, respond, timer)
        # Copied, as a message on the wire would be: the service cannot change the sender's.
        sent = None if headers is None else dict(headers)
        if not self.broker.publish(subject, payload, inbox, sent) and self._inbox is not None:
            self.broker.answer_no_responders(self._inbox, inbox)
        return token

    def request(self, subject: str, payload: bytes) -> Deferred[bytes]:
        token = 0
        d: Deferred[bytes] = Deferred(lambda _: self._forget(token))

        def respond(reply: bytes | None, error: errors.ResError | None) -> None:
            if error is None:
                d.callback(reply)
            else:
                d.errback(error)

        token = self.send_request(subject, payload, respond)
        return d

    def subscribe(self, subject: str, handler: MessageHandler) -> MemoryBusSubscription:
        if not self._connected:
            raise NOT_CONNECTED
        check_subject(subject, wildcards=True)
        if len(subject) + _PUB_OVERHEAD > MAX_CONTROL_LINE:
            raise errors.SUBJECT_TOO_LONG
        subscription = MemoryBusSubscription(self, subject, handler)
        self._subscriptions.add(subscription)
        return subscription

    def publish(self, subject: str, payload: bytes, reply: str | None = None) -> None:
        if not self._connected:
            raise NOT_CONNECTED
        check_subject(subject)
        if reply is not None:
            check_subject(reply)
        _check_sizes(subject, reply or "", payload)
        self.broker.publish(subject, payload, reply or "")

    def send_now(self) -> None:
        """Nothing waits here for a turn's end: what was published is with the broker already."""

    def has_unread(self) -> bool:
        """Whether the broker holds messages not delivered yet (for any of its connections)."""
        return self.broker.pending > 0

    def close(self) -> Deferred[None]:
        if self._connected:
            self._drop(errors.DISPOSING)
        return defer.succeed(None)

    def lose(self, reason: str = "lost the memory bus") -> None:
        """Drop the connection as a dying server would: requests fail, ``on_lost(reason)`` runs."""
        if not self._connected:
            return
        self._drop(errors.internal_error(reason))
        if self.on_lost is not None:
            try:
                self.on_lost(reason)
            except Exception:
                log.failure("on_lost handler failed")

    def _on_reply(self, subject: str, payload: bytes, reply: str, headers: Headers) -> None:
        try:
            token = int(subject[len(self._inbox_prefix):])
        except ValueError:
            return
        request = self._requests.get(token)
        if request is None:
            return
        if headers is None and payload and _A <= (payload[0] | 32) <= _Z:
            self._extend(request, payload)
            return
        self._forget(token)
        if headers == NO_RESPONDERS:
            _answer(request, None, errors.NOT_FOUND)
        else:
            _answer(request, payload, None)

    def _extend(self, request: _Request, meta: bytes) -> None:
        """A pre-response: wait its ``timeout`` from now instead; other meta is ignored."""
        found = _PRE_RESPONSE_TIMEOUT.search(meta)
        if found is None:
            return
        request.timer.reset(max(int(found[1]), 0) / 1000)

    def _forget(self, token: int) -> None:
        request = self._requests.pop(token, None)
        if request is not None and request.timer.active():
            request.timer.cancel()

    def _time_out(self, token: int) -> None:
        request = self._requests.pop(token, None)
        if request is not None:
            _answer(request, None, errors.TIMEOUT)

    def _drop(self, error: errors.ResError) -> None:
        self._connected = False
        if self._inbox is not None:
            self.broker.unsubscribe(self._inbox)
            self._inbox = None
        for subscription in list(self._subscriptions):
            subscription.unsubscribe()
        requests, self._requests = self._requests, {}
        for request in requests.values():
            if request.timer.active():
                request.timer.cancel()
            _answer(request, None, error)


def _answer(request: _Request, reply: bytes | None, error: errors.ResError | None) -> None:
    """Give a request its outcome; a failing callback is logged and delivery goes on."""
    try:
        request.respond(reply, error)
    except Exception:
        log.failure("Handling the reply to a memory bus request")


# ---------------------------------------------------------------------------
# The services' end, shaped as nats-py's client


@dataclass
class MemoryMessage:
    """A message as a service sees it (nats-py's ``Msg``: subject, data, reply, respond)."""

    subject: str
    data: bytes
    reply: str
    headers: dict[str, str] | None = None
    _connection: MemoryConnection | None = field(default=None, repr=False)

    async def respond(self, data: bytes) -> None:
        if not self.reply or self._connection is None:
            raise ValueError("the message has no reply subject")
        await self._connection.publish(self.reply, data)


class MemorySubscription:
    """A service's subscription: to a callback, or to ``next_msg``."""

    def __init__(self, connection: MemoryConnection, subject: str,
                 cb: Callable[[MemoryMessage], Awaitable[None] | None] | None) -> None:
        self.subject = subject
        self._connection = connection
        self._cb = cb
        self._messages: defer.DeferredQueue = defer.DeferredQueue()
        self._sub = connection.broker.subscribe(subject, self._deliver)

    async def next_msg(self, timeout: float = NEXT_MSG_TIMEOUT) -> MemoryMessage:
        d = self._messages.get().addTimeout(timeout, self._connection.broker.clock)
        return await d.asFuture(asyncio.get_running_loop())

    async def unsubscribe(self) -> None:
        self._connection.broker.unsubscribe(self._sub)

    def _deliver(self, subject: str, payload: bytes, reply: str, headers: Headers) -> None:
        msg = MemoryMessage(subject, payload, reply, headers, self._connection)
        if self._cb is None:
            self._messages.put(msg)
            return
        result = self._cb(msg)
        # nats-py awaits an async callback; one that does not await finishes here, in order.
        if inspect.isawaitable(result):
            defer.ensureDeferred(result).addErrback(
                lambda failure: log.failure("Service callback failed for {subject}", failure, subject=subject))


class MemoryConnection:
    """A service's connection to a MemoryBroker, with the part of nats-py's client API the rig uses."""

    def __init__(self, broker: MemoryBroker) -> None:
        self.broker = broker
        self._subscriptions: list[MemorySubscription] = []
        self._closed = False

    @property
    def is_connected(self) -> bool:
        return not self._closed

    def new_inbox(self) -> str:
        return self.broker.new_inbox()

    async def subscribe(self, subject: str, cb: Callable[[MemoryMessage], Any] | None = None) -> MemorySubscription:
        self._check_open()
        check_subject(subject, wildcards=True)
        subscription = MemorySubscription(self, subject, cb)
        self._subscriptions.append(subscription)
        return subscription

    async def publish(self, subject: str, payload: bytes = b"", reply: str = "") -> None:
        self._check_open()
        check_subject(subject)
        _check_sizes(subject, reply, payload)
        self.broker.publish(subject, payload, reply)

    async def flush(self, timeout: float = NEXT_MSG_TIMEOUT) -> None:
        """Everything published is with the broker already."""
        self._check_open()

    async def close(self) -> None:
        self._closed = True
        for subscription in self._subscriptions:
            await subscription.unsubscribe()
        self._subscriptions.clear()

    def _check_open(self) -> None:
        if self._closed:
            raise ConnectionError("the memory bus connection is closed")
