"""ResourceCache: one copy of every resource any client holds.

A ``NameEntry`` exists per resource name and holds its NATS event
subscription (``event.<name>.*``); it holds a ``CachedResource`` per query
variant (the base one without query). Each CachedResource gets the resource
once, applies events to its single copy before subscribers hear of them
(docs/design.md, invariant 3), and forgets events that came while its get
was pending: the bus delivers in order, so such events are already part of
the get response (invariant 2). Nothing here knows WebSockets, HTTP or NATS:
the cache talks to services through a ``Bus``, and to its subscribers
(``CacheSubscriber``) always through the work queue.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Iterable, Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from resgate import codec, errors
from resgate.bus import Bus, BusSubscription
from resgate.cache.faults import FaultLog, excerpt
from resgate.cache.pattern import ResourcePattern
from resgate.cache.resources import TYPE_COLLECTION, TYPE_MODEL, Collection, Model, ResourceEvent, collection_diff
from resgate.cache.throttle import Throttle
from resgate.codec import Value
from resgate.workqueue import WorkQueue

if TYPE_CHECKING:
    from resgate.tracing import RequestTrace

log = Logger(namespace="resgate.cache")

#: Resgate's delay before a resource nobody subscribes is evicted (seconds).
UNSUBSCRIBE_DELAY = 5.0

STATE_SUBSCRIBED = 0
STATE_ERROR = 1
STATE_REQUESTED = 2
STATE_COLLECTION = TYPE_COLLECTION
STATE_MODEL = TYPE_MODEL


class CacheSubscriber(Protocol):
    """What the cache needs of a subscriber (a connection's subscription).

    Always called through the work queue.
    """

    @property
    def cid(self) -> str: ...

    resource_name: str
    resource_query: str
    #: What its get waits for, if it must be requested (``subscribe_all``).
    throttle: Throttle | None

    def loaded(self, resource: CachedResource | None, error: errors.ResError | None) -> None:
        """The resource loaded (``resource``), or could not be (``error``)."""

    def event(self, event: ResourceEvent) -> None:
        """The cache applied ``event`` to the resource."""

    def reaccess(self, throttle: Throttle | None) -> None:
        """Access to the resource may have changed: check it again."""


class TokenResetHandler(Protocol):
    def __call__(self, tids: set[str], subject: str) -> None: ...


class CachedResource:
    """One cached resource (name plus normalized query) and the subscribers holding it."""

    __slots__ = ("owner", "query", "state", "subs", "resetting", "links", "version",
                 "model", "collection", "error")

    def __init__(self, owner: NameEntry, query: str) -> None:
        self.owner = owner
        self.query = query
        self.state = STATE_SUBSCRIBED
        self.subs: dict[CacheSubscriber, None] = {}
        self.resetting = False
        #: The queries the service normalized to this one's: the empty tuple
        #: until the first (most resources have no query), one object less
        #: per resource for the cyclic GC to walk.
        self.links: list[str] | tuple[()] = ()
        self.version = 0
        self.model: Model | None = None
        self.collection: Collection | None = None
        self.error: errors.ResError | None = None

    @property
    def resource_type(self) -> int:
        return self.state

    def unsubscribe(self, sub: CacheSubscriber) -> None:
        """A subscriber lets go; a query resource nobody holds is forgotten."""
        self.subs.pop(sub, None)
        if self.query and not self.subs:
            self._unregister()
        self.owner.remove_count(1)

    # -- loading

    def send_get(self, throttle: Throttle | None, trace: RequestTrace | None) -> None:
        """Get the resource; the get carries ``trace``, that of the subscriber that caused it."""
        cache = self.owner.cache
        subject = "get." + self.owner.name
        payload = codec.create_get_request(self.query)
        if throttle is None:
            cache.request(subject, payload, self._on_get_response, trace)
        else:
            def start() -> None:
                def respond(data: bytes | None, error: errors.ResError | None) -> None:
                    throttle.done()
                    self._on_get_response(data, error)
                cache.request(subject, payload, respond, trace)
            throttle.add(start)

    def _on_get_response(self, data: bytes | None, error: errors.ResError | None) -> None:
        result = None
        if error is None:
            assert data is not None  # the bus sends data or an error
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
                def fail(sub: CacheSubscriber = sub, error: errors.ResError = error) -> None:
                    sub.loaded(None, error)
                work.enqueue(fail)
            return
        assert result is not None  # no error, so decoded
        target = self
        if result.query != self.query:
            # The service normalized the query: share the normalized resource.
            owner = self.owner
            target = owner.resource(result.query)
            if self.query == "":
                owner.base = target
            else:
                owner.links[self.query] = target
                owner.queries.pop(self.query, None)
            if target.links:
                target.links.append(self.query)
            else:
                target.links = [self.query]
            for sub in self.subs:
                target.subs[sub] = None
        subs = list(self.subs)
        if target.state <= STATE_REQUESTED:
            target.version = 0
            if result.model is not None:
                target.model = Model(result.model)
                target.state = STATE_MODEL
            else:
                assert result.collection is not None  # a get result holds one or the other
                target.collection = Collection(result.collection)
                target.state = STATE_COLLECTION
        for sub in subs:
            def load(sub: CacheSubscriber = sub) -> None:
                sub.loaded(target, None)
            work.enqueue(load)

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
        self.links = ()

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
        # One piece of work for all subscribers, not one each: they ran back
        # to back anyway (nothing is queued between them, and what each
        # enqueues runs after all of them), without a closure and a queue
        # entry per subscriber.
        subs = list(self.subs)
        self.owner.cache.work.enqueue(lambda: _deliver(subs, event))

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
        assert self.model is not None  # events come only once a model is loaded
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
        event.references = any(
            value.type == codec.VALUE_REFERENCE
            or (key in old and old[key].type == codec.VALUE_REFERENCE) for key, value in changed.items())
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
        assert self.collection is not None  # events come only once a collection is loaded
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
        assert self.collection is not None  # events come only once a collection is loaded
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
            def deliver(sub: CacheSubscriber = sub) -> None:
                sub.event(event)
            work.enqueue(deliver)

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
            def reaccess(sub: CacheSubscriber = sub) -> None:
                sub.reaccess(throttle)
            work.enqueue(reaccess)

    def _on_reset_response(self, data: bytes | None, error: errors.ResError | None) -> None:
        result = None
        if error is None:
            assert data is not None  # the bus sends data or an error
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
        # No error: decoded, and of the cached type (checked above).
        assert result is not None
        if self.state == STATE_MODEL:
            assert result.model is not None
            self.reset_model(result.model)
        elif self.state == STATE_COLLECTION:
            assert result.collection is not None
            self.reset_collection(result.collection)

    def reset_model(self, values: dict[str, Value]) -> None:
        """Send the change that turns the cached model into ``values``."""
        assert self.model is not None  # reset only a loaded model
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
        assert self.collection is not None  # reset only a loaded collection
        for event in collection_diff(self.collection.values, values):
            self.handle_event(event)


def _deliver_loaded(cached: list[tuple[CacheSubscriber, CachedResource]]) -> None:
    """Tell each subscriber its cached resource loaded; one that fails does not keep it from the rest."""
    for sub, resource in cached:
        try:
            sub.loaded(resource, None)
        except Exception:
            log.failure("Unexpected error in a subscriber's loaded resource")


def _deliver(subs: list[CacheSubscriber], event: ResourceEvent) -> None:
    """Tell each subscriber of ``event``; one that fails does not keep it from the rest."""
    for sub in subs:
        try:
            sub.event(event)
        except Exception:
            log.failure("Unexpected error delivering an event to a subscriber")


class NameEntry:
    """Everything cached under one resource name, and its bus subscription of the name's events."""

    __slots__ = ("name", "cache", "bus_sub", "count", "base", "queries", "links",
                 "_evict_timer", "_held", "_locks")

    def __init__(self, cache: ResourceCache, name: str) -> None:
        self.name = name
        self.cache = cache
        self.bus_sub: BusSubscription | None = None
        self.count = 0
        self.base: CachedResource | None = None
        self.queries: dict[str, CachedResource] = {}
        self.links: dict[str, CachedResource] = {}
        self._evict_timer: IDelayedCall | None = None
        # Events held back while query event requests are in flight (made on first use).
        self._held: list[tuple[str, bytes]] | tuple[()] = ()
        self._locks = 0

    def resource(self, query: str) -> CachedResource:
        if query == "":
            if self.base is None:
                self.base = CachedResource(self, "")
            return self.base
        rs = self.queries.get(query) or self.links.get(query)
        if rs is None:
            rs = self.queries[query] = CachedResource(self, query)
        return rs

    def add_subscriber(self, sub: CacheSubscriber, throttle: Throttle | None,
                       trace: RequestTrace | None) -> CachedResource | None:
        """Hold ``sub`` on its resource; the resource if it is loaded already, for the
        caller to hand to ``sub.loaded`` through the work queue (else ``sub.loaded`` follows)."""
        query = sub.resource_query
        rs = self.base if not query and self.base is not None else self.resource(query)
        if rs.state != STATE_ERROR:
            rs.subs[sub] = None
        work = self.cache.work
        if rs.state == STATE_SUBSCRIBED:
            rs.state = STATE_REQUESTED
            rs.send_get(throttle, trace)
        elif rs.state == STATE_ERROR:
            self.remove_count(1)
            error = rs.error
            work.enqueue(lambda: sub.loaded(None, error))
        elif rs.state != STATE_REQUESTED:
            return rs
        return None

    def add_count(self) -> None:
        # A pending eviction timer stays: it finds the count above 0 and does
        # nothing. Cancelling it here made a timer per cached HTTP GET (each
        # subscribes and releases), for a resource requested many times a second.
        self.count += 1

    def remove_count(self, n: int) -> None:
        if n == 0:
            return
        self.count -= n
        if self.count == 0:
            self.cache.schedule_eviction(self)

    # -- events from NATS

    def bus_event(self, subject: str, payload: bytes) -> None:
        """An event of the name's bus subscription, handled on the work queue.

        A method rather than a closure made per entry (a function, its cells
        and their tuple): objects the cyclic GC walks for every cached name.
        """
        self.cache.work.enqueue(partial(self.on_event, subject, payload))

    def on_event(self, subject: str, payload: bytes) -> None:
        if self._locks:
            if self._held:
                self._held.append((subject, payload))
            else:
                self._held = [(subject, payload)]
            return
        # Counted once, when handled (held events come back through here).
        self.cache.events_received += 1
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
                               partial(self._on_query_response, rs))

    def _on_query_response(self, rs: CachedResource, data: bytes | None,
                           error: errors.ResError | None) -> None:
        try:
            if error is None:
                assert data is not None  # the bus sends data or an error
                self._apply_query_response(rs, data)
        finally:
            self._locks -= 1
            if not self._locks and self._held:
                held, self._held = self._held, ()
                for subject, payload in held:
                    self.on_event(subject, payload)

    def _apply_query_response(self, rs: CachedResource, data: bytes) -> None:
        try:
            result = codec.decode_query_response(data)
        except errors.ResError as e:
            if e.code == errors.CODE_NOT_FOUND:
                rs.handle_event(ResourceEvent("delete"))
            else:
                log.error("Error processing query event for {name}?{query}: {error}",
                          name=self.name, query=rs.query, error=e.message)
            return
        if result.events is not None:
            for name, event_data in result.events:
                rs.handle_event(ResourceEvent(name, event_data))
            return
        model, collection = result.model, result.collection
        if model is not None and rs.state == STATE_MODEL:
            rs.reset_model(model)
        elif collection is not None and rs.state == STATE_COLLECTION:
            rs.reset_collection(collection)
        elif model is not None or collection is not None:
            log.error("Error processing query event for {name}?{query}: mismatching resource type",
                      name=self.name, query=rs.query)

    def all_resources(self) -> list[CachedResource]:
        found = [] if self.base is None or self.base.query != "" else [self.base]
        return found + list(self.queries.values())


class ResourceCache:
    """The resources every connection shares, and the requests that load them."""

    def __init__(self, bus: Bus, work: WorkQueue, *, reactor: IReactorTime,
                 unsubscribe_delay: float = UNSUBSCRIBE_DELAY, reset_throttle: int = 0) -> None:
        self.bus = bus
        self.work = work
        self.reactor = reactor
        self.unsubscribe_delay = unsubscribe_delay
        self.reset_throttle = reset_throttle
        self.faults = FaultLog(reactor)
        # One throttle for every system.reset: a storm of resets, each naming
        # other resources, still has no more than reset_throttle requests in
        # flight (Resgate's throttle is per event, so bounds only one).
        self._reset_throttle = Throttle(reset_throttle) if reset_throttle > 0 else None
        self.names: dict[str, NameEntry] = {}
        #: Resource events from services handled so far (the status page's rate).
        self.events_received = 0
        #: Told of system.tokenReset events; the connections' owner sets it.
        self.on_token_reset: TokenResetHandler | None = None
        self._system_sub: BusSubscription | None = None

    def start(self) -> None:
        """Listen to system events (reset, tokenReset)."""
        self._system_sub = self.bus.subscribe(
            "system.*", lambda subject, payload: self.work.enqueue(lambda: self._on_system(subject, payload))
        )

    def stop(self) -> None:
        self.faults.stop()
        if self._system_sub is not None:
            self._system_sub.unsubscribe()
            self._system_sub = None
        for entry in self.names.values():
            if entry._evict_timer is not None and entry._evict_timer.active():
                entry._evict_timer.cancel()
        self.names.clear()

    # -- requests

    def request(self, subject: str, payload: bytes,
                respond: Callable[[bytes | None, errors.ResError | None], None],
                trace: RequestTrace | None = None) -> None:
        """Send a request, carrying ``trace`` if given; ``respond(data, error)`` runs through the work queue."""
        work = self.work

        def answered(data: bytes | None, error: errors.ResError | None) -> None:
            work.enqueue(lambda: respond(data, error))

        if trace is None:
            self.bus.send_request(subject, payload, answered)
        else:
            trace.send_request(self.bus, subject, payload, answered)

    def subscribe(self, sub: CacheSubscriber, throttle: Throttle | None = None,
                  trace: RequestTrace | None = None) -> None:
        """Load ``sub``'s resource for it; ``sub.loaded`` follows."""
        resource = self._add_subscriber(sub, throttle, trace)
        if resource is not None:
            # A partial, not a lambda: no Python frame more per subscriber of a cached resource.
            self.work.enqueue(partial(sub.loaded, resource, None))

    def subscribe_all(self, subs: Iterable[CacheSubscriber], trace: RequestTrace | None = None) -> None:
        """``subscribe`` each of ``subs`` (with its own throttle); ``loaded`` follows for each.

        The ``loaded`` calls of those whose resource is cached go through the
        work queue as one piece of work: a client's subscribe of a cached
        collection brings a subscription per reference, thousands at times.
        """
        cached: list[tuple[CacheSubscriber, CachedResource]] = []
        names = self.names
        for sub in subs:
            entry = names.get(sub.resource_name)
            if entry is not None and not sub.resource_query:
                resource = entry.base
                if resource is not None and resource.state in (STATE_MODEL, STATE_COLLECTION):
                    # A loaded resource without query, as most references are: held at
                    # once (_add_subscriber and add_subscriber, inline; 10% of a warm subscribe).
                    entry.count += 1
                    resource.subs[sub] = None
                    cached.append((sub, resource))
                    continue
            resource = self._add_subscriber(sub, sub.throttle, trace)
            if resource is not None:
                cached.append((sub, resource))
        if cached:
            self.work.enqueue(partial(_deliver_loaded, cached))

    def _add_subscriber(self, sub: CacheSubscriber, throttle: Throttle | None,
                        trace: RequestTrace | None) -> CachedResource | None:
        entry = self.names.get(sub.resource_name)
        if entry is not None:
            # _name_entry, inline: a client's subscribe may bring thousands of references.
            entry.count += 1  # add_count, inline
        else:
            try:
                entry = self._name_entry(sub.resource_name)
            except errors.ResError as e:
                error = e  # ``e`` is unbound once the except block ends
                self.work.enqueue(lambda: sub.loaded(None, error))
                return None
        return entry.add_subscriber(sub, throttle, trace)

    def access(self, sub: CacheSubscriber, token: Any, is_http: bool,
               callback: Callable[[codec.Access, dict[str, Any] | None], None],
               trace: RequestTrace | None = None) -> None:
        payload = codec.create_request(sub.cid, token, query=sub.resource_query, is_http=is_http)
        subject = "access." + sub.resource_name

        def respond(data: bytes | None, error: errors.ResError | None) -> None:
            if error is not None:
                self.faults.fault(subject, error)
                callback(codec.Access(error=error), None)
                return
            assert data is not None  # the bus sends data or an error
            access, meta = codec.decode_access_response(data)
            if access.error is not None:
                self.faults.fault(subject, access.error)
            callback(access, meta if is_http else None)

        self.request(subject, payload, respond, trace)

    def call(self, subject: str, payload: bytes,
             callback: Callable[[Any, str | None, dict[str, Any] | None, errors.ResError | None], None],
             trace: RequestTrace | None = None) -> None:
        """A call or auth request: ``callback(result, rid, meta, error)``.

        An error response keeps its meta: HTTP answers with both.
        """
        def respond(data: bytes | None, error: errors.ResError | None) -> None:
            if error is not None:
                self.faults.fault(subject, error)
                callback(None, None, None, error)
                return
            assert data is not None  # the bus sends data or an error
            try:
                result, rid, meta = codec.decode_call_response(data)
            except errors.ResError as e:
                self.faults.fault(subject, e)
                callback(None, None, codec.response_meta(data), e)
                return
            callback(result, rid, meta, None)

        self.request(subject, payload, respond, trace)

    # -- event subscriptions

    def _name_entry(self, name: str) -> NameEntry:
        entry = self.names.get(name)
        if entry is None:
            entry = NameEntry(self, name)
            entry.bus_sub = self.bus.subscribe(f"event.{name}.*", entry.bus_event)
            self.names[name] = entry
        entry.add_count()
        return entry

    def schedule_eviction(self, entry: NameEntry) -> None:
        """Evict ``entry`` unsubscribe_delay from now unless it is subscribed again by then.

        An entry the cache no longer holds (it stopped, and clients let go of
        their subscriptions after) has nothing to evict: a timer would only
        keep the stopped gateway alive until it fired.
        """
        if self.names.get(entry.name) is not entry:
            return
        timer = entry._evict_timer
        if timer is not None and timer.active():
            timer.reset(self.unsubscribe_delay)  # moving a timer later costs Twisted no heap work
            return
        entry._evict_timer = self.reactor.callLater(
            self.unsubscribe_delay, lambda: self.work.enqueue(lambda: self._evict(entry))
        )

    def _evict(self, entry: NameEntry) -> None:
        entry._evict_timer = None
        if entry.count > 0 or self.names.get(entry.name) is not entry:
            return
        del self.names[entry.name]
        if entry.bus_sub is not None:
            entry.bus_sub.unsubscribe()

    @property
    def resource_count(self) -> int:
        return len(self.names)

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
        for entry in self._matching(resources):
            for rs in entry.all_resources():
                rs.reset_resource(throttle)
        for entry in self._matching(access):
            for rs in entry.all_resources():
                rs.reset_access(throttle)

    def _matching(self, patterns: list[str]) -> list[NameEntry]:
        parsed = [p for p in (ResourcePattern.parse(text) for text in patterns) if p is not None]
        if not parsed:
            return []
        return [entry for name, entry in self.names.items() if any(p.match(name) for p in parsed)]

    def _token_reset(self, payload: bytes) -> None:
        tids, subject = codec.decode_system_token_reset(payload)
        if not subject:
            log.error("Missing subject in system token reset")
            return
        if not tids:
            return
        if self.on_token_reset is not None:
            self.on_token_reset(set(tids), subject)

