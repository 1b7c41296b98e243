"""Subscription: one connection's hold on one resource and what it references.

A connection has one Subscription per resource ID it holds, directly
(the client subscribed) or indirectly (a held resource references it). The
subscription follows non-soft references recursively, collects the resource
set a client has not yet received, and turns cache events into client
events, subscribing new references and releasing dropped ones. While it waits
for references to load, later events queue behind, so a client never sees
an event about a resource before the resource itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import orjson

from resgate import codec, errors
from resgate.cache import TYPE_COLLECTION, TYPE_MODEL, Collection, Model, ResourceEvent, Throttle
from resgate.codec import Access

if TYPE_CHECKING:
    from resgate.conn import Connection

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

QUEUE_LOADING = 1
QUEUE_REACCESS = 2

DISPOSED_SUBSCRIPTION = errors.ResError("system.disposedSubscription", "Resource subscription is disposed")


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


class _ReadyWaiter:
    """Waits for a subscription and all it references to have loaded."""

    __slots__ = ("seen", "callback", "loading")

    def __init__(self, callback: Callable[[], None]) -> None:
        self.seen: set[str] = set()
        self.callback = callback
        self.loading = 0


class Subscription:
    __slots__ = ("rid", "resource_name", "resource_query", "conn", "state", "ready_waiters",
                 "resource", "type", "model", "collection", "version", "refs", "error",
                 "queue_flags", "event_queue", "access", "access_callbacks", "access_pending",
                 "reaccess_pending", "throttle", "direct", "parents")

    def __init__(self, conn: Connection, rid: str, throttle: Throttle | None) -> None:
        self.rid = rid
        self.resource_name, self.resource_query = codec.split_rid(conn.expand_cid(rid))
        self.conn = conn
        self.state = STATE_LOADING
        self.ready_waiters: list[_ReadyWaiter] = []
        self.resource = None
        self.type = 0
        self.model: Model | None = None
        self.collection: Collection | None = None
        self.version = 0
        # rid -> [subscription, count of values referencing it]
        self.refs: dict[str, list] = {}
        self.error: errors.ResError | None = None
        self.queue_flags = QUEUE_LOADING
        self.event_queue: list[ResourceEvent] = []
        self.access: Access | None = None
        self.access_callbacks: list[Callable[[Access], None]] = []
        self.access_pending = False
        self.reaccess_pending = False
        self.throttle = throttle
        #: Direct subscriptions by the client (subscribe, and call resource responses).
        self.direct = 0
        #: The subscriptions whose values reference this one.
        self.parents: dict[Subscription, None] = {}

    # -- what the cache needs of a subscriber

    @property
    def cid(self) -> str:
        return self.conn.cid

    def loaded(self, resource, error: errors.ResError | None) -> None:
        if error is not None:
            self.error = error
            self._done_loading()
            return
        if self.state == STATE_DISPOSED:
            resource.unsubscribe(self)
            return
        self.resource = resource
        self.type = resource.resource_type
        self.state = STATE_LOADED
        self._set_resource()
        if self.error is not None:
            self._done_loading()
            return
        waiters, self.ready_waiters = self.ready_waiters, []
        for waiter in waiters:
            self._collect_refs(waiter)

    def event(self, event: ResourceEvent) -> None:
        if event.event == "reaccess":
            self.reaccess(None)
            return
        if self.resource is None:
            return
        if self.queue_flags:
            self.event_queue.append(event)
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
    def is_ready(self) -> bool:
        return self.state >= STATE_READY

    @property
    def is_sent(self) -> bool:
        return self.state == STATE_SENT

    def current_error(self) -> errors.ResError | None:
        if self.state == STATE_DISPOSED:
            return DISPOSED_SUBSCRIPTION
        return self.error

    def _set_resource(self) -> None:
        self.queue_flags |= QUEUE_LOADING
        if self.type == TYPE_MODEL:
            model = self.resource.model
            for value in model.values.values():
                if not self._subscribe_ref(value):
                    return
            self.model = model
        elif self.type == TYPE_COLLECTION:
            collection = self.resource.collection
            for value in collection.values:
                if not self._subscribe_ref(value):
                    return
            self.collection = collection
        else:
            self.error = errors.internal_error(f"subscription {self.rid}: unknown resource type")
            return
        self.version = self.resource.version

    def _subscribe_ref(self, value: codec.Value) -> bool:
        if value.type != codec.VALUE_REFERENCE:
            return True
        try:
            self._add_reference(value.rid)
        except errors.ResError as e:
            refs, self.refs = self.refs, {}
            for ref in refs.values():
                self.conn.release_reference(ref[0], self)
            self.error = e
            self._done_loading()
            return False
        return True

    # -- readiness

    def on_ready(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once this and everything it references has loaded."""
        if self.is_ready:
            callback()
            return
        self._on_loaded(_ReadyWaiter(callback))

    def _on_loaded(self, waiter: _ReadyWaiter) -> None:
        waiter.seen.add(self.rid)
        waiter.loading += 1
        if self.state >= STATE_LOADED:
            self._collect_refs(waiter)
        else:
            self.ready_waiters.append(waiter)

    def _collect_refs(self, waiter: _ReadyWaiter) -> None:
        for rid, ref in list(self.refs.items()):
            sub = ref[0]
            if sub.is_ready or rid in waiter.seen:
                continue
            sub._on_loaded(waiter)
        waiter.loading -= 1
        if waiter.loading == 0:
            waiter.callback()

    def _done_loading(self) -> None:
        self.state = STATE_READY
        waiters, self.ready_waiters = self.ready_waiters, []
        self.throttle = None
        for waiter in waiters:
            waiter.loading -= 1
            if waiter.loading == 0:
                waiter.callback()

    # -- resource sets

    def resources(self) -> Resources:
        """The resource set of this subscription that the client does not hold yet."""
        resources = Resources()
        self._populate(resources, self.conn.protocol_version < VERSION_SOFT_REFERENCE_AND_DATA)
        return resources

    def _populate(self, resources: Resources, legacy: bool) -> None:
        if self.state == STATE_SENT or self.state == STATE_TO_SEND:
            return
        error = self.current_error()
        if error is not None:
            if resources.errors is None:
                resources.errors = {}
            resources.errors[self.rid] = error.to_dict()
            return
        if self.type == TYPE_COLLECTION:
            if resources.collections is None:
                resources.collections = {}
            resources.collections[self.rid] = self.collection.legacy_json() if legacy else self.collection.json()
        elif self.type == TYPE_MODEL:
            if resources.models is None:
                resources.models = {}
            resources.models[self.rid] = self.model.legacy_json() if legacy else self.model.json()
        self.state = STATE_TO_SEND
        for ref in self.refs.values():
            ref[0]._populate(resources, legacy)

    def release_resources(self) -> None:
        """Mark what ``resources`` collected as sent, and let queued events through."""
        if self.state == STATE_DISPOSED or self.state == STATE_SENT or self.error is not None:
            return
        self.state = STATE_SENT
        for ref in list(self.refs.values()):
            ref[0].release_resources()
        self._unqueue_events(QUEUE_LOADING)

    def unsend(self) -> None:
        """The client no longer holds this resource; it stays for a reference still loading."""
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
        queued, self.event_queue = self.event_queue, []
        for i, event in enumerate(queued):
            self._process_event(event)
            if self.queue_flags:
                self.event_queue = queued[i + 1:] + self.event_queue
                return

    def _process_event(self, event: ResourceEvent) -> None:
        if self.version != event.version:
            return
        if event.update:
            # Keep the copy this subscription sends in step with the events it passed on.
            self.version += 1
            if event.model is not None:
                self.model = event.model
            else:
                self.collection = event.collection
        if self.resource.resource_type == TYPE_COLLECTION:
            self._collection_event(event)
        else:
            self._model_event(event)

    def _send_event(self, event: str, data: Any) -> None:
        # A resource kept only for a reference that is still loading is not the
        # client's: it hears of it again, current, when that reference is sent.
        if self.state == STATE_SENT:
            self.conn.send_event(self.rid, event, data)

    def _legacy(self) -> bool:
        return self.conn.protocol_version < VERSION_SOFT_REFERENCE_AND_DATA

    def _collection_event(self, event: ResourceEvent) -> None:
        name = event.event
        if name == "add":
            value = event.value
            idx = event.idx
            if value.type == codec.VALUE_REFERENCE:
                try:
                    sub = self._add_reference(value.rid)
                except errors.ResError as e:
                    self.conn.log_error(f"Subscription {self.rid}: Error subscribing to resource {value.rid}: {e.message}")
                    return
                if sub.is_sent or not self.is_sent:
                    self._send_event(name, {"idx": idx, "value": value.raw})
                    return
                self._queue_events(QUEUE_LOADING)

                def ready() -> None:
                    if self.state == STATE_DISPOSED:
                        return
                    if self.is_sent:
                        data = sub.resources().add_to({"idx": idx, "value": value.raw})
                        self._send_event(name, data)
                        sub.release_resources()
                    self._unqueue_events(QUEUE_LOADING)

                sub.on_ready(ready)
            else:
                raw = value.legacy() if self._legacy() else value.raw
                self._send_event(name, {"idx": idx, "value": raw})
        elif name == "remove":
            if event.value.type == codec.VALUE_REFERENCE:
                self._remove_reference(event.value.rid)
            self._send_event(name, event.payload)
        elif name == "delete":
            self._deleted(event)
        else:
            self._send_event(name, event.payload)

    def _model_event(self, event: ResourceEvent) -> None:
        name = event.event
        if name == "change":
            changed = event.changed
            old = event.old_values
            subs = []
            has_unsent = False
            for value in changed.values():
                if value.type == codec.VALUE_REFERENCE:
                    try:
                        sub = self._add_reference(value.rid)
                    except errors.ResError as e:
                        self.conn.log_error(f"Subscription {self.rid}: Error subscribing to resource {value.rid}: {e.message}")
                        return
                    has_unsent = has_unsent or not sub.is_sent
                    subs.append(sub)
            for key in changed:
                previous = old.get(key)
                if previous is not None and previous.type == codec.VALUE_REFERENCE:
                    self._remove_reference(previous.rid)
            legacy = self._legacy()
            values = {k: (v.legacy() if legacy else v.raw) for k, v in changed.items()}
            # Only a resource the client holds brings the client new references.
            if not has_unsent or not self.is_sent:
                self._send_event(name, {"values": values})
                return
            self._queue_events(QUEUE_LOADING)
            remaining = [len(subs)]

            def ready() -> None:
                if self.state == STATE_DISPOSED:
                    return
                remaining[0] -= 1
                if remaining[0] > 0:
                    return
                if self.is_sent:
                    resources = Resources()
                    for sub in subs:
                        sub._populate(resources, legacy)
                    self._send_event(name, resources.add_to({"values": values}))
                    for sub in subs:
                        sub.release_resources()
                self._unqueue_events(QUEUE_LOADING)

            for sub in subs:
                sub.on_ready(ready)
        elif name == "delete":
            self._deleted(event)
        else:
            self._send_event(name, event.payload)

    def _deleted(self, event: ResourceEvent) -> None:
        self._send_event(event.event, event.payload)
        self.state = STATE_DELETED
        self._unsubscribe_direct(errors.DELETED)

    # -- references

    def _add_reference(self, rid: str) -> Subscription:
        ref = self.refs.get(rid)
        if ref is None:
            sub = self.conn.subscribe_reference(rid, self, self.throttle)
            self.refs[rid] = [sub, 1]
            return sub
        ref[1] += 1
        return ref[0]

    def _remove_reference(self, rid: str) -> None:
        ref = self.refs[rid]
        ref[1] -= 1
        if ref[1] == 0:
            del self.refs[rid]
            self.conn.release_reference(ref[0], self)

    def _unsubscribe_refs(self) -> None:
        refs, self.refs = self.refs, {}
        for ref in refs.values():
            ref[0].parents.pop(self, None)

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
        self.access_callbacks.append(callback)
        if self.access_pending:
            return
        self.access_pending = True

        def done(access: Access, _meta: Any) -> None:
            if throttle is not None:
                throttle.done()
            if self.state == STATE_DISPOSED:
                return
            callbacks, self.access_callbacks = self.access_callbacks, []
            self.access_pending = False
            if access.error is None or access.error.code == errors.CODE_ACCESS_DENIED:
                self.access = access
            for cb in callbacks:
                cb(access)

        if throttle is None:
            self.conn.request_access(self, done)
        else:
            throttle.add(lambda: self.conn.request_access(self, done))

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
        self.ready_waiters = []
        self.event_queue = []
        self.throttle = None
        if self.resource is not None:
            self._unsubscribe_refs()
            if state != STATE_DELETED:
                self.resource.unsubscribe(self)
            self.resource = None


def encode_event(rid: str, event: str, data: Any) -> bytes:
    """A client event message, ``{"event": "<rid>.<event>", "data": ...}``."""
    if data is None:
        return orjson.dumps({"event": f"{rid}.{event}"})
    return orjson.dumps({"event": f"{rid}.{event}", "data": data})
