"""ResourceCache: one copy of every resource any client holds.

An ``EventSubscription`` exists per resource name (``event.<name>.*`` on
NATS); it holds a ``ResourceSubscription`` per query variant (the base one
without query). Each ResourceSubscription gets the resource once, applies
events to its single copy before subscribers hear of them (DESIGN.md,
invariant 3), and forgets events that came while its get was pending: NATS
delivers in order, so such events are already part of the get response
(invariant 2). Nothing here knows WebSockets or HTTP: subscribers are
objects with ``cid``, ``resource_name``, ``resource_query`` and the methods
``loaded(resource, error)``, ``event(event)`` and ``reaccess(throttle)``,
always called through the work queue.
"""

from __future__ import annotations

import collections
from typing import Any, Callable

import orjson
from twisted.logger import Logger

from resgate import codec, errors
from resgate.codec import Value

log = Logger(namespace="resgate.cache")

#: Resgate's delay before a resource nobody subscribes is evicted (seconds).
UNSUBSCRIBE_DELAY = 5.0

STATE_SUBSCRIBED = 0
STATE_ERROR = 1
STATE_REQUESTED = 2
STATE_COLLECTION = 3
STATE_MODEL = 4

TYPE_COLLECTION = STATE_COLLECTION
TYPE_MODEL = STATE_MODEL


#: How many characters of a service's message a log line quotes at most.
LOG_EXCERPT = 200


def excerpt(text: object) -> str:
    """``text`` (bytes shown as their repr) cut short for one log line."""
    if isinstance(text, bytes):
        shown = repr(text[:LOG_EXCERPT])
        if len(text) > LOG_EXCERPT or len(shown) > LOG_EXCERPT:
            return f"{shown[:LOG_EXCERPT]}... ({len(text)} bytes)"
        return shown
    text = str(text)
    if len(text) > LOG_EXCERPT:
        return f"{text[:LOG_EXCERPT]}... ({len(text)} characters)"
    return text


#: Seconds during which further faults of one kind, by one service, for one
#: request type, are counted instead of logged one by one.
FAULT_LOG_WINDOW = 10.0


class FaultLog:
    """Warnings for a service's faults: no answer in time, or a broken one.

    Warnings: Resgate logs neither (the requester gets the error), but an
    operator needs to know which service misbehaves. A service's own error
    response is no fault of it and is not logged. A service that is down
    times out every request made to it, a line per request with many
    clients; so the first fault of a kind for a request type and service
    (``get.library``) is logged whole, and the next ones are counted for
    ``FAULT_LOG_WINDOW`` seconds and told in one line at its end, window
    after window while they go on.
    """

    def __init__(self, clock) -> None:
        self._clock = clock
        #: (message, subject prefix) -> faults not logged in the open window, and its end.
        self._windows: dict[tuple[str, str], list] = {}

    def fault(self, subject: str, error: errors.ResError) -> None:
        # errors.TIMEOUT itself is mq's timeout; a service's system.timeout response is another object.
        if error is errors.TIMEOUT:
            message, reason = "Request timeout on", ""
        elif isinstance(error, errors.InvalidResponse):
            message, reason = "Invalid response to", excerpt(error.reason)
        else:
            return
        request_type, _, name = subject.partition(".")
        key = (message, f"{request_type}.{name.partition('.')[0]}")
        window = self._windows.get(key)
        if window is not None:
            window[0] += 1
            return
        if reason:
            log.warn("{message} {subject}: {reason}", message=message, subject=subject, reason=reason)
        else:
            log.warn("{message} {subject}", message=message, subject=subject)
        self._open(key)

    def _open(self, key: tuple[str, str]) -> None:
        self._windows[key] = [0, self._clock.callLater(FAULT_LOG_WINDOW, self._close, key)]

    def _close(self, key: tuple[str, str]) -> None:
        count, _ = self._windows.pop(key)
        if count:
            message, prefix = key
            log.warn("{message} {prefix}.*: {count} more in the last {window:g} s",
                     message=message, prefix=prefix, count=count, window=FAULT_LOG_WINDOW)
            self._open(key)

    def stop(self) -> None:
        for _, timer in self._windows.values():
            if timer.active():
                timer.cancel()
        self._windows.clear()


def _references(values) -> dict[str, None]:
    return {value.rid: None for value in values if value.type == codec.VALUE_REFERENCE}


class Model:
    """A model's values; its JSON is encoded once and shared by every client."""

    __slots__ = ("values", "_json", "_legacy_json", "_references")

    def __init__(self, values: dict[str, Value]) -> None:
        self.values = values
        self._json: orjson.Fragment | None = None
        self._legacy_json: orjson.Fragment | None = None
        self._references: dict[str, None] | None = None

    def references(self) -> dict[str, None]:
        """The resource IDs this model references (non-soft), as an ordered set."""
        if self._references is None:
            self._references = _references(self.values.values())
        return self._references

    def json(self) -> orjson.Fragment:
        if self._json is None:
            self._json = orjson.Fragment(orjson.dumps({k: v.raw for k, v in self.values.items()}))
        return self._json

    def legacy_json(self) -> orjson.Fragment:
        """The model as a client of protocol 1.2.0 or older sees it."""
        if self._legacy_json is None:
            self._legacy_json = orjson.Fragment(
                orjson.dumps({k: v.legacy() for k, v in self.values.items()})
            )
        return self._legacy_json


class Collection:
    """A collection's values; its JSON is encoded once and shared by every client."""

    __slots__ = ("values", "_json", "_legacy_json", "_references")

    def __init__(self, values: list[Value]) -> None:
        self.values = values
        self._json: orjson.Fragment | None = None
        self._legacy_json: orjson.Fragment | None = None
        self._references: dict[str, None] | None = None

    def references(self) -> dict[str, None]:
        """The resource IDs this collection references (non-soft), as an ordered set."""
        if self._references is None:
            self._references = _references(self.values)
        return self._references

    def json(self) -> orjson.Fragment:
        if self._json is None:
            self._json = orjson.Fragment(orjson.dumps([v.raw for v in self.values]))
        return self._json

    def legacy_json(self) -> orjson.Fragment:
        if self._legacy_json is None:
            self._legacy_json = orjson.Fragment(orjson.dumps([v.legacy() for v in self.values]))
        return self._legacy_json


class ResourceEvent:
    """An event as the cache applied it, for subscribers to pass on.

    ``version`` is the resource version the event applies to; ``update``
    says it changed the resource (change/add/remove), so subscribers that
    hold an older or newer copy know to skip it.
    """

    __slots__ = ("event", "payload", "idx", "value", "changed", "old_values", "version", "update",
                 "model", "collection", "messages")

    def __init__(self, event: str, payload: Any = None) -> None:
        self.event = event
        self.payload = payload
        self.idx = 0
        self.value: Value | None = None
        self.changed: dict[str, Value] | None = None
        self.old_values: dict[str, Value] | None = None
        self.version = 0
        self.update = False
        #: The resource as this event left it (updates only).
        self.model: Model | None = None
        self.collection: Collection | None = None
        #: The client message of this event, encoded once for every subscriber
        #: that sends the same bytes (see Subscription._send_shared).
        self.messages: dict | None = None


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


class ResourcePattern:
    """A resource name pattern of a system.reset event: ``*`` a part, ``>`` the rest."""

    __slots__ = ("parts", "tail")

    def __init__(self, pattern: str) -> None:
        parts = pattern.split(".")
        self.tail = parts[-1] == ">"
        if self.tail:
            parts.pop()
        self.parts = parts

    @classmethod
    def parse(cls, pattern: str) -> ResourcePattern | None:
        """The pattern, or None when it is not a valid one (Resgate ignores those)."""
        parts = pattern.split(".")
        for i, part in enumerate(parts):
            if part in ("*", ">"):
                if part == ">" and i != len(parts) - 1:
                    return None
                continue
            if not codec.is_valid_rid_part(part):
                return None
        return cls(pattern)

    def match(self, name: str) -> bool:
        if not name:
            return False
        tokens = name.split(".")
        if len(tokens) < len(self.parts) + (1 if self.tail else 0):
            return False
        if not self.tail and len(tokens) != len(self.parts):
            return False
        return all(p == "*" or p == t for p, t in zip(self.parts, tokens))


class ResourceSubscription:
    """One resource (name plus normalized query) and the subscribers holding it."""

    __slots__ = ("owner", "query", "state", "subs", "resetting", "links", "version",
                 "model", "collection", "error")

    def __init__(self, owner: EventSubscription, query: str) -> None:
        self.owner = owner
        self.query = query
        self.state = STATE_SUBSCRIBED
        self.subs: dict[Any, None] = {}
        self.resetting = False
        self.links: list[str] = []
        self.version = 0
        self.model: Model | None = None
        self.collection: Collection | None = None
        self.error: errors.ResError | None = None

    @property
    def resource_type(self) -> int:
        return self.state

    def unsubscribe(self, sub: Any) -> None:
        """A subscriber lets go; a query resource nobody holds is forgotten."""
        self.subs.pop(sub, None)
        if self.query and not self.subs:
            self._unregister()
        self.owner.remove_count(1)

    # -- loading

    def send_get(self, throttle: Throttle | None) -> None:
        cache = self.owner.cache
        subject = "get." + self.owner.name
        payload = codec.create_get_request(self.query)
        if throttle is None:
            cache.request(subject, payload, self._on_get_response)
        else:
            def start() -> None:
                def respond(data: bytes | None, error: errors.ResError | None) -> None:
                    throttle.done()
                    self._on_get_response(data, error)
                cache.request(subject, payload, respond)
            throttle.add(start)

    def _on_get_response(self, data: bytes | None, error: errors.ResError | None) -> None:
        result = None
        if error is None:
            try:
                result = codec.decode_get_response(data)
            except errors.ResError as e:
                error = e
        work = self.owner.cache.work
        if error is not None:
            self.owner.cache.faults.fault("get." + self.owner.name, error)
            self.state = STATE_ERROR
            self.error = error
            subs = list(self.subs)
            self.subs = {}
            self._unregister()
            self.owner.remove_count(len(subs))
            for sub in subs:
                work.enqueue(lambda sub=sub: sub.loaded(None, error))
            return
        target = self
        if result.query != self.query:
            # The service normalized the query: share the normalized resource.
            owner = self.owner
            target = owner.resource_subscription(result.query)
            if self.query == "":
                owner.base = target
            else:
                owner.links[self.query] = target
                owner.queries.pop(self.query, None)
            target.links.append(self.query)
            for sub in self.subs:
                target.subs[sub] = None
        subs = list(self.subs)
        if target.state <= STATE_REQUESTED:
            target.version = 0
            if result.model is not None:
                target.model = Model(result.model)
                target.state = STATE_MODEL
            else:
                target.collection = Collection(result.collection)
                target.state = STATE_COLLECTION
        for sub in subs:
            work.enqueue(lambda sub=sub: sub.loaded(target, None))

    def _unregister(self) -> None:
        owner = self.owner
        if self.query == "":
            if owner.base is self:
                owner.base = None
        else:
            owner.queries.pop(self.query, None)
        for query in self.links:
            if query == "":
                owner.base = None
            else:
                owner.links.pop(query, None)
        self.links = []

    # -- events

    def handle_event(self, event: ResourceEvent) -> None:
        """Apply an event to the cached copy, then tell the subscribers."""
        if self.state <= STATE_REQUESTED and event.event != "reaccess":
            return
        event.version = self.version
        name = event.event
        if name == "change":
            if self.resetting or not self._apply_change(event):
                return
        elif name == "add":
            if self.resetting or not self._apply_add(event):
                return
        elif name == "remove":
            if self.resetting or not self._apply_remove(event):
                return
        elif name == "delete":
            if not self.resetting:
                self._apply_delete(event)
            return
        work = self.owner.cache.work
        for sub in list(self.subs):
            work.enqueue(lambda sub=sub: sub.event(event))

    def _error(self, event: str, reason: object) -> bool:
        log.error("Error processing event {name}.{event}: {reason}",
                  name=self.owner.name, event=event, reason=excerpt(reason))
        return False

    def _apply_change(self, event: ResourceEvent) -> bool:
        if self.state == STATE_COLLECTION:
            return self._error("change", "change event on collection")
        try:
            changes = codec.decode_change_event(event.payload)
        except errors.ResError as e:
            return self._error("change", e.message)
        old = self.model.values
        values = dict(old)
        changed: dict[str, Value] = {}
        for key, value in changes.items():
            if value.type == codec.VALUE_DELETE:
                if key in values:
                    del values[key]
                    changed[key] = value
            elif key not in values or values[key] != value:
                values[key] = value
                changed[key] = value
        if not changed:
            return False
        event.changed = changed
        event.old_values = old
        event.update = True
        self.model = event.model = Model(values)
        self.version += 1
        return True

    def _apply_add(self, event: ResourceEvent) -> bool:
        if self.state == STATE_MODEL:
            return self._error("add", "add event on model")
        try:
            idx, value = codec.decode_add_event(event.payload)
        except errors.ResError as e:
            return self._error("add", e.message)
        old = self.collection.values
        if idx < 0 or idx > len(old):
            return self._error("add", f"idx {idx} is out of bounds")
        self.collection = event.collection = Collection(old[:idx] + [value] + old[idx:])
        self.version += 1
        event.idx = idx
        event.value = value
        event.update = True
        return True

    def _apply_remove(self, event: ResourceEvent) -> bool:
        if self.state == STATE_MODEL:
            return self._error("remove", "remove event on model")
        try:
            idx = codec.decode_remove_event(event.payload)
        except errors.ResError as e:
            return self._error("remove", e.message)
        old = self.collection.values
        if idx < 0 or idx >= len(old):
            return self._error("remove", f"idx {idx} is out of bounds")
        event.value = old[idx]
        self.collection = event.collection = Collection(old[:idx] + old[idx + 1:])
        self.version += 1
        event.idx = idx
        event.update = True
        return True

    def _apply_delete(self, event: ResourceEvent) -> None:
        subs = list(self.subs)
        self.subs = {}
        self._unregister()
        self.owner.remove_count(len(subs))
        work = self.owner.cache.work
        for sub in subs:
            work.enqueue(lambda sub=sub: sub.event(event))

    # -- system.reset

    def reset_resource(self, throttle: Throttle | None) -> None:
        """Get the resource again and turn the differences into events."""
        if self.resetting:
            return
        self.resetting = True
        cache = self.owner.cache
        subject = "get." + self.owner.name
        payload = codec.create_get_request(self.query)

        def respond(data: bytes | None, error: errors.ResError | None) -> None:
            if throttle is not None:
                throttle.done()
            self.resetting = False
            self._on_reset_response(data, error)

        if throttle is None:
            cache.request(subject, payload, respond)
        else:
            throttle.add(lambda: cache.request(subject, payload, respond))

    def reset_access(self, throttle: Throttle | None) -> None:
        work = self.owner.cache.work
        for sub in list(self.subs):
            work.enqueue(lambda sub=sub: sub.reaccess(throttle))

    def _on_reset_response(self, data: bytes | None, error: errors.ResError | None) -> None:
        result = None
        if error is None:
            try:
                result = codec.decode_get_response(data)
                if (self.state == STATE_MODEL and result.model is None) or (
                    self.state == STATE_COLLECTION and result.collection is None
                ):
                    error = errors.internal_error("mismatching resource type")
            except errors.ResError as e:
                error = e
        if error is not None:
            if error.code == errors.CODE_NOT_FOUND:
                self.handle_event(ResourceEvent("delete"))
            else:
                log.error("Subscription {name}: Reset get error - {error}",
                          name=self.owner.name, error=error.message)
            return
        if self.state == STATE_MODEL:
            self.reset_model(result.model)
        elif self.state == STATE_COLLECTION:
            self.reset_collection(result.collection)

    def reset_model(self, values: dict[str, Value]) -> None:
        """Send the change that turns the cached model into ``values``."""
        old = self.model.values
        changes = {key: codec.DELETE_VALUE for key in old if key not in values}
        for key, value in values.items():
            if key not in old or old[key] != value:
                changes[key] = value
        if changes:
            payload = {"values": {key: value.raw for key, value in changes.items()}}
            self.handle_event(ResourceEvent("change", payload))

    def reset_collection(self, values: list[Value]) -> None:
        """Send the add/remove events that turn the cached collection into ``values``."""
        for event in collection_diff(self.collection.values, values):
            self.handle_event(event)


def collection_diff(a: list[Value], b: list[Value]) -> list[ResourceEvent]:
    """remove and add events turning ``a`` into ``b`` (longest common subsequence)."""
    start = 0
    while start < len(a) and start < len(b) and a[start] == b[start]:
        start += 1
    end_a, end_b = len(a), len(b)
    while end_a > start and end_b > start and a[end_a - 1] == b[end_b - 1]:
        end_a -= 1
        end_b -= 1
    aa, bb = a[start:end_a], b[start:end_b]
    m, n = len(aa), len(bb)
    if m == 0 and n == 0:
        return []
    # lengths[i][j]: LCS length of aa[:i] and bb[:j]
    lengths = [[0] * (n + 1) for _ in range(m + 1)]
    for i in range(m):
        for j in range(n):
            if aa[i] == bb[j]:
                lengths[i + 1][j + 1] = lengths[i][j] + 1
            else:
                lengths[i + 1][j + 1] = max(lengths[i + 1][j], lengths[i][j + 1])
    keep_a: set[int] = set()
    keep_b: set[int] = set()
    i, j = m, n
    while i > 0 and j > 0:
        if aa[i - 1] == bb[j - 1]:
            keep_a.add(i - 1)
            keep_b.add(j - 1)
            i -= 1
            j -= 1
        elif lengths[i - 1][j] >= lengths[i][j - 1]:
            i -= 1
        else:
            j -= 1
    events = []
    # Remove from the end first so earlier indexes stay valid.
    for i in range(m - 1, -1, -1):
        if i not in keep_a:
            events.append(ResourceEvent("remove", {"idx": start + i}))
    # After the removals the kept items sit in order; insert the new ones.
    for j in range(n):
        if j not in keep_b:
            events.append(ResourceEvent("add", {"idx": start + j, "value": bb[j].raw}))
    return events


class EventSubscription:
    """Everything cached under one resource name, and its NATS event subscription."""

    __slots__ = ("name", "cache", "mq_sub", "count", "base", "queries", "links",
                 "_evict_timer", "_held", "_locks")

    def __init__(self, cache: ResourceCache, name: str) -> None:
        self.name = name
        self.cache = cache
        self.mq_sub = None
        self.count = 0
        self.base: ResourceSubscription | None = None
        self.queries: dict[str, ResourceSubscription] = {}
        self.links: dict[str, ResourceSubscription] = {}
        self._evict_timer = None
        # Events held back while query event requests are in flight.
        self._held: list[tuple[str, bytes]] = []
        self._locks = 0

    def resource_subscription(self, query: str) -> ResourceSubscription:
        if query == "":
            if self.base is None:
                self.base = ResourceSubscription(self, "")
            return self.base
        rs = self.queries.get(query) or self.links.get(query)
        if rs is None:
            rs = self.queries[query] = ResourceSubscription(self, query)
        return rs

    def add_subscriber(self, sub: Any, throttle: Throttle | None) -> None:
        rs = self.resource_subscription(sub.resource_query)
        if rs.state != STATE_ERROR:
            rs.subs[sub] = None
        work = self.cache.work
        if rs.state == STATE_SUBSCRIBED:
            rs.state = STATE_REQUESTED
            rs.send_get(throttle)
        elif rs.state == STATE_REQUESTED:
            return
        elif rs.state == STATE_ERROR:
            self.remove_count(1)
            error = rs.error
            work.enqueue(lambda: sub.loaded(None, error))
        else:
            work.enqueue(lambda: sub.loaded(rs, None))

    def add_count(self) -> None:
        if self._evict_timer is not None:
            self._evict_timer.cancel()
            self._evict_timer = None
        self.count += 1

    def remove_count(self, n: int) -> None:
        if n == 0:
            return
        self.count -= n
        if self.count == 0:
            self.cache.schedule_eviction(self)

    # -- events from NATS

    def on_event(self, subject: str, payload: bytes) -> None:
        if self._locks:
            self._held.append((subject, payload))
            return
        event = subject[len(self.name) + 7:]
        if not event:
            log.error("Error processing event {subject}: malformed event subject", subject=subject)
            return
        if event == "query":
            self._on_query_event(subject, payload)
            return
        base = self.base
        if base is None or base.query != "":
            return
        try:
            data = codec.decode_event(payload)
        except errors.ResError:
            log.error("Error processing event {subject}: malformed payload {payload}",
                      subject=subject, payload=excerpt(payload))
            return
        base.handle_event(ResourceEvent(event, data))

    def _on_query_event(self, subject: str, payload: bytes) -> None:
        if not self.queries:
            return
        try:
            message = codec.decode_event(payload)
        except errors.ResError:
            message = None
        reply_subject = message.get("subject") if isinstance(message, dict) else None
        if not isinstance(reply_subject, str) or not reply_subject:
            log.error("Missing subject in event {subject}: {payload}", subject=subject, payload=excerpt(payload))
            return
        for rs in list(self.queries.values()):
            if rs.state <= STATE_REQUESTED:
                continue
            self._locks += 1
            self.cache.request(reply_subject, codec.create_event_query_request(rs.query),
                               lambda data, error, rs=rs: self._on_query_response(rs, data, error))

    def _on_query_response(self, rs: ResourceSubscription, data: bytes | None,
                           error: errors.ResError | None) -> None:
        try:
            if error is None:
                self._apply_query_response(rs, data)
        finally:
            self._locks -= 1
            if not self._locks and self._held:
                held, self._held = self._held, []
                for subject, payload in held:
                    self.on_event(subject, payload)

    def _apply_query_response(self, rs: ResourceSubscription, data: bytes) -> None:
        try:
            message = codec._response(data)
            error = codec._response_error(message)
            if error is not None:
                raise error
            result = message.get("result")
            if not isinstance(result, dict):
                raise errors.internal_error("response missing result")
            events = result.get("events")
            if events is not None:
                if not isinstance(events, list) or result.get("model") is not None \
                        or result.get("collection") is not None:
                    raise errors.internal_error("invalid service response")
                for item in events:
                    if isinstance(item, dict) and isinstance(item.get("event"), str):
                        rs.handle_event(ResourceEvent(item["event"], item.get("data")))
                return
            model, collection = codec._decode_resource(result)
        except errors.ResError as e:
            if e.code == errors.CODE_NOT_FOUND:
                rs.handle_event(ResourceEvent("delete"))
            else:
                log.error("Error processing query event for {name}?{query}: {error}",
                          name=self.name, query=rs.query, error=e.message)
            return
        if model is not None and rs.state == STATE_MODEL:
            rs.reset_model(model)
        elif collection is not None and rs.state == STATE_COLLECTION:
            rs.reset_collection(collection)
        elif model is not None or collection is not None:
            log.error("Error processing query event for {name}?{query}: mismatching resource type",
                      name=self.name, query=rs.query)

    def all_resources(self) -> list[ResourceSubscription]:
        found = [] if self.base is None or self.base.query != "" else [self.base]
        return found + list(self.queries.values())


class ResourceCache:
    """The resources every connection shares, and the requests that load them."""

    def __init__(self, mq, work, *, reactor, unsubscribe_delay: float = UNSUBSCRIBE_DELAY,
                 reset_throttle: int = 0) -> None:
        self.mq = mq
        self.work = work
        self.reactor = reactor
        self.unsubscribe_delay = unsubscribe_delay
        self.reset_throttle = reset_throttle
        self.faults = FaultLog(reactor)
        # One throttle for every system.reset: a storm of resets, each naming
        # other resources, still has no more than reset_throttle requests in
        # flight (Resgate's throttle is per event, so bounds only one).
        self._reset_throttle = Throttle(reset_throttle) if reset_throttle > 0 else None
        self.event_subs: dict[str, EventSubscription] = {}
        self.conns: dict[str, Any] = {}
        self._system_sub = None

    def start(self) -> None:
        """Listen to system events (reset, tokenReset)."""
        self._system_sub = self.mq.subscribe(
            "system.*", lambda subject, payload: self.work.enqueue(lambda: self._on_system(subject, payload))
        )

    def stop(self) -> None:
        self.faults.stop()
        if self._system_sub is not None:
            self._system_sub.unsubscribe()
            self._system_sub = None
        for es in self.event_subs.values():
            if es._evict_timer is not None and es._evict_timer.active():
                es._evict_timer.cancel()
        self.event_subs.clear()

    # -- requests

    def request(self, subject: str, payload: bytes,
                respond: Callable[[bytes | None, errors.ResError | None], None]) -> None:
        """Send a request; ``respond(data, error)`` runs through the work queue."""
        work = self.work
        self.mq.send_request(subject, payload, lambda data, error: work.enqueue(lambda: respond(data, error)))

    def subscribe(self, sub: Any, throttle: Throttle | None = None) -> None:
        """Load ``sub``'s resource for it; ``sub.loaded`` follows."""
        try:
            es = self._event_subscription(sub.resource_name)
        except errors.ResError as e:
            error = e  # ``e`` is unbound once the except block ends
            self.work.enqueue(lambda: sub.loaded(None, error))
            return
        es.add_subscriber(sub, throttle)

    def access(self, sub: Any, token: Any, is_http: bool,
               callback: Callable[[codec.Access, dict | None], None]) -> None:
        payload = codec.create_request(sub.cid, token, query=sub.resource_query, is_http=is_http)
        subject = "access." + sub.resource_name

        def respond(data: bytes | None, error: errors.ResError | None) -> None:
            if error is not None:
                self.faults.fault(subject, error)
                callback(codec.Access(error=error), None)
                return
            access, meta = codec.decode_access_response(data)
            if access.error is not None:
                self.faults.fault(subject, access.error)
            callback(access, meta if is_http else None)

        self.request(subject, payload, respond)

    def call(self, subject: str, payload: bytes,
             callback: Callable[[Any, str | None, dict | None, errors.ResError | None], None]) -> None:
        """A call or auth request: ``callback(result, rid, meta, error)``.

        An error response keeps its meta: HTTP answers with both.
        """
        def respond(data: bytes | None, error: errors.ResError | None) -> None:
            if error is not None:
                self.faults.fault(subject, error)
                callback(None, None, None, error)
                return
            try:
                result, rid, meta = codec.decode_call_response(data)
            except errors.ResError as e:
                self.faults.fault(subject, e)
                callback(None, None, codec.response_meta(data), e)
                return
            callback(result, rid, meta, None)

        self.request(subject, payload, respond)

    # -- connections (for system.tokenReset)

    def add_conn(self, conn: Any) -> None:
        self.conns[conn.cid] = conn

    def remove_conn(self, conn: Any) -> None:
        self.conns.pop(conn.cid, None)

    # -- event subscriptions

    def _event_subscription(self, name: str) -> EventSubscription:
        es = self.event_subs.get(name)
        if es is None:
            es = EventSubscription(self, name)
            handler = es.on_event
            work = self.work
            es.mq_sub = self.mq.subscribe(
                f"event.{name}.*", lambda subject, payload: work.enqueue(lambda: handler(subject, payload))
            )
            self.event_subs[name] = es
        es.add_count()
        return es

    def schedule_eviction(self, es: EventSubscription) -> None:
        es._evict_timer = self.reactor.callLater(
            self.unsubscribe_delay, lambda: self.work.enqueue(lambda: self._evict(es))
        )

    def _evict(self, es: EventSubscription) -> None:
        es._evict_timer = None
        if es.count > 0 or self.event_subs.get(es.name) is not es:
            return
        del self.event_subs[es.name]
        if es.mq_sub is not None:
            es.mq_sub.unsubscribe()

    @property
    def resource_count(self) -> int:
        return len(self.event_subs)

    # -- system events

    def _on_system(self, subject: str, payload: bytes) -> None:
        event = subject[7:]
        try:
            if event == "reset":
                self._system_reset(payload)
            elif event == "tokenReset":
                self._token_reset(payload)
        except errors.ResError as e:
            log.error("Error decoding system {event}: {error}", event=event, error=e.message)

    def _system_reset(self, payload: bytes) -> None:
        resources, access = codec.decode_system_reset(payload)
        throttle = self._reset_throttle
        for es in self._matching(resources):
            for rs in es.all_resources():
                rs.reset_resource(throttle)
        for es in self._matching(access):
            for rs in es.all_resources():
                rs.reset_access(throttle)

    def _matching(self, patterns: list[str]) -> list[EventSubscription]:
        parsed = [p for p in (ResourcePattern.parse(text) for text in patterns) if p is not None]
        if not parsed:
            return []
        return [es for name, es in self.event_subs.items() if any(p.match(name) for p in parsed)]

    def _token_reset(self, payload: bytes) -> None:
        tids, subject = codec.decode_system_token_reset(payload)
        if not subject:
            log.error("Missing subject in system token reset")
            return
        if not tids:
            return
        wanted = set(tids)
        for conn in list(self.conns.values()):
            conn.token_reset(wanted, subject)
