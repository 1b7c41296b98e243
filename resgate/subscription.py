"""Subscription: one connection's hold on one resource and what it references.

A connection has one Subscription per resource ID it holds, directly
(the client subscribed) or indirectly (a held resource references it). The
subscription follows non-soft references recursively, collects the resource
set a client has not yet received, and turns cache events into client
events, subscribing new references and releasing dropped ones. While it waits
for references to load, later events queue behind, so a client never sees
an event about a resource before the resource itself.

A subscription's ``model``/``collection`` is the client's copy: the resource
as of the last event the client was sent (or would have been, when it does
not hold it). An event waiting for its new references changes it only when
it goes out, and the references it drops are released only then, so what
the gateway believes the client holds (refgraph.py) follows the
references the client sees. ``refs`` holds those references and, for an
event still waiting, the new ones it brings: they keep subscriptions alive,
but only the copy's references make the client hold anything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, Protocol

from resgate import codec, errors
from resgate.cache.resources import TYPE_COLLECTION, TYPE_MODEL, Collection, Model, ResourceEvent
from resgate.cache.throttle import Throttle
from resgate.clientcodec import SharedMessage, encode_event
from resgate.codec import Access

from resgate.workqueue import WorkQueue

if TYPE_CHECKING:
    from resgate.cache.cache import CachedResource

#: Protocol versions, as MAJOR * 1000000 + MINOR * 1000 + PATCH.
VERSION_LATEST = 1002003
VERSION_LEGACY = 1001001
VERSION_CALL_RESOURCE_RESPONSE = 1002000
VERSION_SOFT_REFERENCE_AND_DATA = 1002001

STATE_DISPOSED = 0
STATE_LOADING = 1
STATE_LOADED = 2
STATE_READY = 3
STATE_TO_SEND = 4
STATE_SENT = 5
STATE_DELETED = 6

#: Events wait: the resource was loaded and not yet sent to the client.
QUEUE_LOADING = 1
#: Events wait: access is being checked again.
QUEUE_REACCESS = 2
#: Events wait: an earlier event waits for the new references it brings.
QUEUE_REFERENCES = 4

#: References subscribed between two sends of what is queued for the services (``_subscribe_refs``).
REFERENCES_PER_SEND = 128

DISPOSED_SUBSCRIPTION = errors.ResError("system.disposedSubscription", "Resource subscription is disposed")


class SubscriptionOwner(Protocol):
    """What a subscription needs of the connection that owns it."""

    cid: str
    token: Any
    protocol_version: int
    work: WorkQueue

    def expand_cid(self, rid: str) -> str: ...

    def log_error(self, message: str) -> None: ...

    def send_event(self, rid: str, event: str, data: Any) -> None: ...

    def send_shared(self, message: SharedMessage) -> None: ...

    def subscribe_references(self, rids: tuple[str, ...], parent: Subscription, throttle: Throttle | None,
                             bounded: bool) -> None: ...

    def release_reference(self, sub: Subscription, parent: Subscription) -> None: ...

    def unsubscribe_direct(self, sub: Subscription, count: int) -> None: ...

    def request_access(self, sub: Subscription, callback: Callable[[Access, Any], None]) -> None: ...

    def send_requests_now(self) -> None: ...


class Resources:
    """A resource set for the client: models, collections and errors by RID."""

    __slots__ = ("models", "collections", "errors")

    def __init__(self) -> None:
        self.models: dict[str, Any] | None = None
        self.collections: dict[str, Any] | None = None
        self.errors: dict[str, Any] | None = None

    def add_to(self, message: dict) -> dict:
        """Put the non-empty parts into ``message`` (a result or event data)."""
        if self.models:
            message["models"] = self.models
        if self.collections:
            message["collections"] = self.collections
        if self.errors:
            message["errors"] = self.errors
        return message


# The data of an event every subscriber sends alike (Subscription._send_shared),
# for clients of the legacy protocol generation or not.

def _changed_data(event: ResourceEvent, legacy: bool) -> dict[str, Any]:
    assert event.changed is not None  # a change event has its values
    return {"values": {k: (v.legacy() if legacy else v.raw) for k, v in event.changed.items()}}


def _added_data(event: ResourceEvent, legacy: bool) -> dict[str, Any]:
    value = event.value
    assert value is not None  # an add event has a value
    return {"idx": event.idx, "value": value.legacy() if legacy else value.raw}


def _payload_data(event: ResourceEvent, legacy: bool) -> Any:
    return event.payload


class _ReadyWaiter:
    """Waits for a subscription and all it references to have loaded."""

    __slots__ = ("seen", "callback", "loading")

    def __init__(self, callback: Callable[[], None]) -> None:
        self.seen: set[Subscription] = set()
        self.callback = callback
        #: Subscriptions still loading, plus one while the walk is under way.
        self.loading = 1

    def walk(self, subs: Iterable[Subscription]) -> None:
        """Wait for what ``subs`` and their references need, short of what the client holds.

        A resource the client holds (sent) is complete and ends the walk, as
        it ends a resource set (``_populate``). All ``refs`` are followed, not
        only the copy's: more than needed at worst, never less.
        """
        stack = list(subs)
        seen = self.seen
        while stack:
            sub = stack.pop()
            state = sub.state
            if state == STATE_SENT:
                continue
            # Only what is waited for or walked on is remembered: a loaded
            # resource that references nothing (most) adds nothing, however
            # often it is reached.
            if state == STATE_LOADING:
                if sub in seen:
                    continue
                seen.add(sub)
                self.loading += 1
                waiters = sub.ready_waiters
                if waiters:
                    waiters.append(self)
                else:
                    sub.ready_waiters = [self]
            elif sub.refs and sub not in seen:
                seen.add(sub)
                stack.extend(sub.refs.values())

    def done(self) -> None:
        self.loading -= 1
        if self.loading == 0:
            self.callback()


class Subscription:
    __slots__ = ("rid", "resource_name", "resource_query", "conn", "state", "ready_waiters",
                 "resource", "type", "model", "collection", "version", "refs", "ref_counts", "error",
                 "queue_flags", "event_queue", "access", "access_callbacks", "access_pending",
                 "reaccess_pending", "throttle", "direct", "pending", "parent", "more_parents")

    def __init__(self, conn: SubscriptionOwner, rid: str, throttle: Throttle | None) -> None:
        self.rid = rid
        # codec.split_rid, inline: a subscription is made for every resource a client gets.
        self.resource_name, _, self.resource_query = conn.expand_cid(rid).partition("?")
        self.conn = conn
        self.state = STATE_LOADING
        # The three lists below start as the empty tuple, which costs nothing,
        # and are made on their first entry: most subscriptions never get one,
        # and a client's warm subscribe of 1,000 references makes 1,001 subscriptions.
        self.ready_waiters: list[_ReadyWaiter] | tuple[()] = ()
        self.resource: CachedResource | None = None
        self.type = 0
        self.model: Model | None = None
        self.collection: Collection | None = None
        self.version = 0
        #: The subscriptions this one references, by resource ID.
        self.refs: dict[str, Subscription] = {}
        #: How many values reference a resource, for those referenced more
        #: than once (most are referenced once: no count, and no object per
        #: reference, for them).
        self.ref_counts: dict[str, int] | tuple[()] = ()
        self.error: errors.ResError | None = None
        self.queue_flags = QUEUE_LOADING
        self.event_queue: list[ResourceEvent] | tuple[()] = ()
        self.access: Access | None = None
        self.access_callbacks: list[Callable[[Access], None]] | tuple[()] = ()
        self.access_pending = False
        self.reaccess_pending = False
        self.throttle = throttle
        #: Direct subscriptions by the client (subscribe, and call resource responses).
        self.direct = 0
        #: How many of them still wait for their response. Until it is sent the
        #: client does not hold the resource through them: they keep the
        #: subscription alive, but do not make it the client's.
        self.pending = 0
        #: The subscriptions whose values reference this one (``parents``):
        #: most have one, held here without a dict of its own; the others
        #: are keys of ``more_parents``.
        self.parent: Subscription | None = None
        self.more_parents: dict[Subscription, None] | tuple[()] = ()

    def add_parent(self, parent: Subscription) -> None:
        more = self.more_parents
        if parent is self.parent or parent in more:
            return
        if self.parent is None:
            self.parent = parent
        elif isinstance(more, dict):
            more[parent] = None
        else:
            self.more_parents = {parent: None}

    def remove_parent(self, parent: Subscription) -> None:
        if parent is self.parent:
            self.parent = None
        elif isinstance(self.more_parents, dict):
            self.more_parents.pop(parent, None)

    @property
    def parents(self) -> list[Subscription]:
        """The subscriptions whose values reference this one."""
        parents = list(self.more_parents)
        if self.parent is not None:
            parents.append(self.parent)
        return parents

    # -- what the cache needs of a subscriber

    @property
    def cid(self) -> str:
        return self.conn.cid

    def loaded(self, resource, error: errors.ResError | None) -> None:
        if self.state == STATE_DISPOSED:
            if resource is not None:
                resource.unsubscribe(self)
            return
        if error is not None:
            self.error = error
            self._done_loading()
            return
        self.resource = resource
        self.type = resource.resource_type
        self.state = STATE_LOADED
        self._set_resource()
        if self.error is not None:
            self._done_loading()
            return
        waiters, self.ready_waiters = self.ready_waiters, ()
        for waiter in waiters:
            if self.refs:  # what they reference must load too; most resources reference nothing
                waiter.walk(list(self.refs.values()))
            waiter.done()

    def event(self, event: ResourceEvent) -> None:
        if event.event == "reaccess":
            self.reaccess(None)
            return
        if self.resource is None:
            return
        if self.queue_flags:
            queue = self.event_queue
            if queue:
                queue.append(event)
            else:
                self.event_queue = [event]
            return
        self._process_event(event)

    def reaccess(self, throttle: Throttle | None) -> None:
        if self.state == STATE_DISPOSED:
            return
        if self.queue_flags:
            self.reaccess_pending = True
            return
        self._handle_reaccess(throttle)

    # -- state

    @property
    def is_sent(self) -> bool:
        return self.state == STATE_SENT

    @property
    def held_directly(self) -> bool:
        """The client holds this resource through a direct subscription it got the response of."""
        return self.direct > self.pending

    def current_error(self) -> errors.ResError | None:
        if self.state == STATE_DISPOSED:
            return DISPOSED_SUBSCRIPTION
        return self.error

    def _set_resource(self) -> None:
        self.queue_flags |= QUEUE_LOADING
        resource = self.resource
        assert resource is not None  # called once loaded sets it
        if self.type == TYPE_MODEL:
            model = resource.model
            assert model is not None  # the type says which one is set
            rids = model.reference_rids()
            if rids and not self._subscribe_refs(rids):
                return
            self.model = model
        elif self.type == TYPE_COLLECTION:
            collection = resource.collection
            assert collection is not None  # the type says which one is set
            rids = collection.reference_rids()
            if rids and not self._subscribe_refs(rids):
                return
            self.collection = collection
        else:
            self.error = errors.internal_error(f"subscription {self.rid}: unknown resource type")
            return
        self.version = resource.version

    def _subscribe_refs(self, rids: tuple[str, ...]) -> bool:
        """Subscribe what the resource references; False if one is refused, which fails this subscription."""
        conn = self.conn
        throttle = self.throttle
        many = len(rids) > REFERENCES_PER_SEND
        try:
            for start in range(0, len(rids), REFERENCES_PER_SEND):
                if many:
                    # Thousands of references take milliseconds to subscribe: what is
                    # queued for the services by then (this subscribe's access request,
                    # the gets for the references before) goes out now, not after.
                    conn.send_requests_now()
                conn.subscribe_references(rids[start:start + REFERENCES_PER_SEND], self, throttle, True)
        except errors.ResError as e:
            refs, self.refs, self.ref_counts = self.refs, {}, ()
            for sub in refs.values():
                self.conn.release_reference(sub, self)
            self.error = e
            self._done_loading()
            return False
        return True

    # -- readiness

    def on_ready(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once this and what its resource set needs has loaded.

        Not only a first load: a resource the client does not hold takes
        events at once, and one may have brought references still loading.
        """
        waiter = _ReadyWaiter(callback)
        waiter.walk([self])
        waiter.done()

    def _done_loading(self) -> None:
        self.state = STATE_READY
        waiters, self.ready_waiters = self.ready_waiters, ()
        self.throttle = None
        for waiter in waiters:
            waiter.done()

    # -- resource sets

    def resources(self) -> Resources:
        """The resource set of this subscription that the client does not hold yet."""
        resources = Resources()
        self._populate(resources, self.conn.protocol_version < VERSION_SOFT_REFERENCE_AND_DATA)
        return resources

    def _populate(self, resources: Resources, legacy: bool) -> None:
        # Depth first, in the order of the copies' references, as a recursion
        # would go, but on a list: a chain of references may be thousands deep.
        stack = [self]
        while stack:
            sub = stack.pop()
            state = sub.state
            if state == STATE_SENT or state == STATE_TO_SEND:
                continue
            error = DISPOSED_SUBSCRIPTION if state == STATE_DISPOSED else sub.error  # current_error, inline
            if error is not None:
                if resources.errors is None:
                    resources.errors = {}
                resources.errors[sub.rid] = error.to_dict()
                continue
            if sub.type == TYPE_COLLECTION:
                assert sub.collection is not None  # set before the subscription is sent
                if resources.collections is None:
                    resources.collections = {}
                resources.collections[sub.rid] = sub.collection.legacy_json() if legacy else sub.collection.json()
            elif sub.type == TYPE_MODEL:
                assert sub.model is not None  # set before the subscription is sent
                if resources.models is None:
                    resources.models = {}
                resources.models[sub.rid] = sub.model.legacy_json() if legacy else sub.model.json()
            sub.state = STATE_TO_SEND
            if sub.refs:  # most of a resource set references nothing: no call for those
                stack.extend(reversed(sub.copy_refs()))

    def copy_refs(self) -> list[Subscription]:
        """The subscriptions the client's copy of this resource references."""
        refs = self.refs
        if not refs:  # a resource without references: most of a resource set
            return []
        if self.model is not None:
            rids = self.model.references()
        elif self.collection is not None:
            rids = self.collection.references()
        else:
            return []
        return [refs[rid] for rid in rids if rid in refs]

    def references(self, child: Subscription) -> bool:
        """Whether the client's copy of this resource references ``child``."""
        if self.model is not None:
            return child.rid in self.model.references()
        if self.collection is not None:
            return child.rid in self.collection.references()
        return False

    def _mark_sent(self, released: list[Subscription]) -> None:
        # In the order _populate went, on a list as it does.
        stack = [self]
        while stack:
            sub = stack.pop()
            if sub.state != STATE_TO_SEND:
                continue
            sub.state = STATE_SENT
            released.append(sub)
            if sub.refs:
                stack.extend(reversed(sub.copy_refs()))

    def unsend(self) -> None:
        """The client no longer holds this resource; something still keeps it alive.

        It takes events at once, without sending them, and comes again in
        full when the client gets it again.
        """
        self.state = STATE_READY

    # -- events

    def _queue_events(self, reason: int) -> None:
        self.queue_flags |= reason

    def _unqueue_events(self, reason: int) -> None:
        self.queue_flags &= ~reason
        if self.queue_flags:
            return
        if self.reaccess_pending:
            self._handle_reaccess(None)
            if self.queue_flags:
                return
        queued, self.event_queue = self.event_queue, ()
        for i, event in enumerate(queued):
            self._process_event(event)
            if self.queue_flags:
                self.event_queue = [*queued[i + 1:], *self.event_queue]
                return

    def _process_event(self, event: ResourceEvent) -> None:
        if self.version != event.version:
            return
        if event.update:
            # The next event applies to the resource as this one leaves it; the
            # client's copy (model/collection) follows when this one goes out.
            self.version += 1
        resource = self.resource
        assert resource is not None  # events reach only loaded subscriptions
        if resource.resource_type == TYPE_COLLECTION:
            self._collection_event(event)
        else:
            self._model_event(event)

    def _send_event(self, event: str, data: Any) -> None:
        # A resource kept only for a reference that is still loading is not the
        # client's: it hears of it again, current, when that reference is sent.
        if self.state == STATE_SENT:
            self.conn.send_event(self.rid, event, data)

    def _send_shared(self, event: ResourceEvent, data: Callable[[ResourceEvent, bool], Any]) -> None:
        """Send ``event`` with ``data(event, legacy)``, encoded and framed once for all alike.

        Every subscriber of a resource that sends no resource set with the
        event sends the same bytes, given the same resource ID and protocol
        generation: the first one encodes them, the rest reuse them. ``data``
        is a module function, not a closure: nothing is built per subscriber.
        """
        if self.state != STATE_SENT:
            return
        legacy = self.conn.protocol_version < VERSION_SOFT_REFERENCE_AND_DATA
        key = (self.rid, legacy)
        messages = event.messages
        if messages is None:
            messages = event.messages = {}
        message = messages.get(key)
        if message is None:
            message = messages[key] = SharedMessage(encode_event(self.rid, event.event, data(event, legacy)))
        self.conn.send_shared(message)

    def _legacy(self) -> bool:
        return self.conn.protocol_version < VERSION_SOFT_REFERENCE_AND_DATA

    def _add_reference_or_log(self, rid: str) -> Subscription | None:
        """The reference an event adds, subscribed; None (logged) if it cannot be.

        The resource cap does not refuse it: the client's copy would no longer
        follow the service's (the resources it references in turn count).
        """
        try:
            return self._add_reference(rid, bounded=False)
        except errors.ResError as e:
            self.conn.log_error(f"Subscription {self.rid}: Error subscribing to resource {rid}: {e.message}")
            return None

    def _collection_event(self, event: ResourceEvent) -> None:
        name = event.event
        if name == "add":
            value = event.value
            assert value is not None  # an add event has a value
            idx = event.idx
            if value.type == codec.VALUE_REFERENCE:
                assert value.rid is not None  # references have one
                sub = self._add_reference_or_log(value.rid)
                if sub is None:
                    return
                if sub.is_sent or not self.is_sent:
                    self._send_shared(event, _added_data)
                    self.collection = event.collection
                    return
                self._queue_events(QUEUE_REFERENCES)

                def ready() -> None:
                    if self.state == STATE_DISPOSED:
                        return
                    released = []
                    if self.is_sent:
                        data = sub.resources().add_to({"idx": idx, "value": value.raw})
                        self._send_event(name, data)
                        released = mark_sent([sub])
                    self.collection = event.collection
                    let_events_through(released)
                    self._unqueue_events(QUEUE_REFERENCES)

                sub.on_ready(ready)
            else:
                self._send_shared(event, _added_data)
                self.collection = event.collection
        elif name == "remove":
            self._send_shared(event, _payload_data)
            self.collection = event.collection
            removed = event.value
            assert removed is not None  # a remove event has the removed value
            if removed.type == codec.VALUE_REFERENCE:
                assert removed.rid is not None  # references have one
                self._remove_reference(removed.rid)
        elif name == "delete":
            self._deleted(event)
        else:
            self._send_shared(event, _payload_data)

    def _model_event(self, event: ResourceEvent) -> None:
        name = event.event
        if name == "change":
            if not event.references:
                self._send_shared(event, _changed_data)
                self.model = event.model
                return
            changed = event.changed
            assert changed is not None  # a change event has its values
            subs = []
            has_unsent = False
            for value in changed.values():
                if value.type == codec.VALUE_REFERENCE:
                    assert value.rid is not None  # references have one
                    sub = self._add_reference_or_log(value.rid)
                    if sub is None:
                        return
                    has_unsent = has_unsent or not sub.is_sent
                    subs.append(sub)
            # Only a resource the client holds brings the client new references.
            if not has_unsent or not self.is_sent:
                self._send_shared(event, _changed_data)
                self._changed_copy(event)
                return
            legacy = self._legacy()
            self._queue_events(QUEUE_REFERENCES)
            remaining = [len(subs)]

            def ready() -> None:
                if self.state == STATE_DISPOSED:
                    return
                remaining[0] -= 1
                if remaining[0] > 0:
                    return
                released = []
                if self.is_sent:
                    resources = Resources()
                    for sub in subs:
                        sub._populate(resources, legacy)
                    self._send_event(name, resources.add_to(_changed_data(event, legacy)))
                    released = mark_sent(subs)
                self._changed_copy(event)
                let_events_through(released)
                self._unqueue_events(QUEUE_REFERENCES)

            for sub in subs:
                sub.on_ready(ready)
        elif name == "delete":
            self._deleted(event)
        else:
            self._send_shared(event, _payload_data)

    def _changed_copy(self, event: ResourceEvent) -> None:
        """The client has a change (or would have): its copy drops the references the change replaced."""
        self.model = event.model
        old = event.old_values
        assert event.changed is not None and old is not None  # a change event has both
        for key in event.changed:
            previous = old.get(key)
            if previous is not None and previous.type == codec.VALUE_REFERENCE:
                assert previous.rid is not None  # references have one
                self._remove_reference(previous.rid)

    def _deleted(self, event: ResourceEvent) -> None:
        self._send_event(event.event, event.payload)
        self.state = STATE_DELETED
        self._unsubscribe_direct(errors.DELETED)

    # -- references

    def _add_reference(self, rid: str, *, bounded: bool = True) -> Subscription:
        self.conn.subscribe_references((rid,), self, self.throttle, bounded)
        return self.refs[rid]

    def count_reference(self, rid: str) -> None:
        """One more value references ``rid``, which is in ``refs`` already."""
        counts = self.ref_counts
        if isinstance(counts, dict):
            counts[rid] = counts.get(rid, 1) + 1
        else:
            self.ref_counts = {rid: 2}

    def _remove_reference(self, rid: str) -> None:
        counts = self.ref_counts
        if isinstance(counts, dict) and rid in counts:
            if counts[rid] > 2:
                counts[rid] -= 1
            else:
                del counts[rid]
            return
        self.conn.release_reference(self.refs.pop(rid), self)

    def _unsubscribe_refs(self) -> None:
        refs, self.refs, self.ref_counts = self.refs, {}, ()
        for sub in refs.values():
            sub.remove_parent(self)

    # -- access

    def _handle_reaccess(self, throttle: Throttle | None) -> None:
        self.access = None
        self.reaccess_pending = False
        if self.direct == 0:
            return
        self._queue_events(QUEUE_REACCESS)

        def validate(access: Access) -> None:
            error = access.can_get()
            if error is not None:
                self._unsubscribe_direct(error)
            self._unqueue_events(QUEUE_REACCESS)

        self._load_access(validate, throttle)

    def _unsubscribe_direct(self, reason: errors.ResError) -> None:
        if self.direct > 0:
            self.conn.unsubscribe_direct(self, self.direct)
            self.conn.send_event(self.rid, "unsubscribe", {"reason": reason.to_dict()})

    def _load_access(self, callback: Callable[[Access], None], throttle: Throttle | None = None) -> None:
        if self.access is not None:
            callback(self.access)
            return
        callbacks = self.access_callbacks
        if callbacks:
            callbacks.append(callback)
        else:
            self.access_callbacks = [callback]
        if self.access_pending:
            return
        self.access_pending = True
        if throttle is None:
            self._request_access(None)
        else:
            throttle.add(lambda: self._request_access(throttle))

    # The request and its answer are methods, not closures over each other: a
    # pair of closures that refer to each other is a reference cycle, which
    # only the cyclic GC frees, two for every subscription that loads access.
    def _request_access(self, throttle: Throttle | None) -> None:
        token = self.conn.token
        self.conn.request_access(self, lambda access, _meta: self._access_loaded(access, token, throttle))

    def _access_loaded(self, access: Access, token: Any, throttle: Throttle | None) -> None:
        if throttle is not None:
            throttle.done()
        if token is not self.conn.token:
            # The answer speaks for a token the connection no longer has:
            # ask again with the current one. Asked after every reaccess
            # that came meanwhile, the new answer stands for them too.
            self.reaccess_pending = False
            self._request_access(None)  # the throttle's slot is given back
            return
        callbacks, self.access_callbacks = self.access_callbacks, ()
        self.access_pending = False
        # Released meanwhile (an event dropped the reference a call asked
        # access on), it keeps nothing, but whoever waits gets the answer.
        if self.state != STATE_DISPOSED and (
                access.error is None or access.error.code == errors.CODE_ACCESS_DENIED):
            self.access = access
        for cb in callbacks:
            cb(access)

    def can_get(self, callback: Callable[[errors.ResError | None], None]) -> None:
        self._load_access(lambda access: callback(access.can_get()))

    def can_call(self, method: str, callback: Callable[[errors.ResError | None], None]) -> None:
        self._load_access(lambda access: callback(access.can_call(method)))

    # -- end

    def dispose(self) -> None:
        if self.state == STATE_DISPOSED:
            return
        state = self.state
        self.state = STATE_DISPOSED
        # Whoever waits for this one to load no longer needs it (a dropped
        # reference). They go on after the release that disposes this one.
        waiters, self.ready_waiters = self.ready_waiters, ()
        work = self.conn.work
        for waiter in waiters:
            work.enqueue(waiter.done)
        self.event_queue = ()
        self.throttle = None
        if self.resource is not None:
            if self.refs:
                self._unsubscribe_refs()
            if state != STATE_DELETED:
                self.resource.unsubscribe(self)
            self.resource = None


def mark_sent(subs: list[Subscription]) -> list[Subscription]:
    """Mark the resource sets collected from ``subs`` sent; the subscriptions marked.

    Their queued events wait for ``let_events_through``, called once the
    client's copies that reference them are up to date: an event may drop a
    reference, and whether the client still holds what it referenced depends
    on everything the client holds by then.
    """
    released: list[Subscription] = []
    for sub in subs:
        sub._mark_sent(released)
    return released


def let_events_through(released: list[Subscription]) -> None:
    for sub in released:
        if sub.queue_flags == QUEUE_LOADING and not sub.event_queue and not sub.reaccess_pending:
            # _unqueue_events with nothing queued, inline: a resource set may be thousands.
            sub.queue_flags = 0
        else:
            sub._unqueue_events(QUEUE_LOADING)
