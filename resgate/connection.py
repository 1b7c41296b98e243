"""Connection: one client's state, whatever carries its messages.

A connection has an ID (cid), a token, its subscriptions by resource ID and
the access it was granted. The WebSocket protocol (ws.py) owns one per
socket; it hands requests in through the methods here and gets bytes out
through ``send``. Requests and their callbacks run on the gateway's work
queue, so a connection's state only changes between pieces of work.
"""

from __future__ import annotations

import base64
import os
from functools import partial
from typing import Any, Callable

from twisted.logger import Logger

from resgate import codec, errors, refgraph
from resgate.cache.throttle import Throttle
from resgate.codec import Access
from resgate.clientcodec import SharedMessage, encode_event
from resgate.context import GatewayContext
from resgate.subscription import (
    VERSION_CALL_RESOURCE_RESPONSE, VERSION_LEGACY, Resources, Subscription, let_events_through, mark_sent,
)
from resgate.tracing import RequestTrace

log = Logger(namespace="resgate.conn")

#: Resgate's limit of direct subscriptions of one resource by one connection.
SUBSCRIPTION_COUNT_LIMIT = 256
#: The placeholder services see replaced by the connection ID.
CID_PLACEHOLDER = "{cid}"

SUBSCRIPTION_LIMIT_EXCEEDED = errors.ResError(
    "system.subscriptionLimitExceeded", "Subscription limit exceeded"
)
#: Ours: the request would make the connection hold more than ``maxResources``.
CODE_RESOURCE_LIMIT_EXCEEDED = "system.resourceLimitExceeded"
RESOURCE_LIMIT_EXCEEDED = errors.ResError(CODE_RESOURCE_LIMIT_EXCEEDED, "Resource limit exceeded")
INVALID_NEW_RESPONSE = errors.internal_error("non-resource response on new request")

ResultCallback = Callable[[Any, "errors.ResError | None"], None]


#: Every pair of the characters of base32hex (lower case): a connection ID's
#: counter part takes three lookups.
_CID_PAIRS = [a + b for a in "0123456789abcdefghijklmnopqrstuv" for b in "0123456789abcdefghijklmnopqrstuv"]


class CidSource:
    """Connection IDs: 20 characters of [0-9a-v], like Resgate's xids.

    A random prefix of 14 characters, drawn anew every 2**30 IDs, then a
    counter in 6 characters: unique across processes and restarts without
    drawing random bytes for every HTTP request.
    """

    _COUNTER_LIMIT = 1 << 30

    def __init__(self) -> None:
        self._renew()

    def _renew(self) -> None:
        self._prefix = base64.b32hexencode(os.urandom(10)).decode("ascii").lower()[:14]
        self._next = 0

    def __call__(self) -> str:
        n = self._next
        if n == self._COUNTER_LIMIT:
            self._renew()
            n = 0
        self._next = n + 1
        pairs = _CID_PAIRS
        return self._prefix + pairs[n >> 20] + pairs[(n >> 10) & 1023] + pairs[n & 1023]


new_cid = CidSource()


class Connection:
    """A client connection; ``send(bytes)`` writes one message to the client.

    It listens for connection events (``conn.<cid>.*``, token events) unless
    ``conn_events`` is False: an HTTP request's connection without an auth
    request has nothing a token could change before it ends.
    """

    #: The trace of the client request being handled: the requests sent for
    #: it carry it. An HTTP request's connection has its request's for its
    #: whole life; a WebSocket connection has one only while a request of its
    #: client is being handled (with spans recorded) or its upgrade's header
    #: auth is under way. A class default: most connections never set it.
    request_trace: RequestTrace | None = None

    def __init__(self, context: GatewayContext, send: Callable[[bytes], None],
                 http_info: dict[str, Any] | Callable[[], dict[str, Any]] | None = None,
                 conn_events: bool = True) -> None:
        self.context = context
        self.cache = context.cache
        self.work = context.work
        self.cid = new_cid()
        self.send = send
        #: Set by a transport that can frame a shared message once for all
        #: its connections (WebSocket prepared messages).
        self.shared_sender: Callable[[SharedMessage], None] | None = None
        self._http_info = http_info
        self.token: Any = None
        self._token_set = False
        self.tid = ""
        self.protocol_version = VERSION_LEGACY
        self.subs: dict[str, Subscription] = {}
        #: How many subscriptions the cap has refused so far: a request that
        #: sees it change looks for the refusal in its resource set.
        self.resource_refusals = 0
        self.disposing = False
        self._conn_sub = None
        context.conns[self.cid] = self
        if not conn_events:
            return
        try:
            self._conn_sub = context.mq.subscribe(f"conn.{self.cid}.*", self._bus_conn_event)
        except errors.ResError as e:
            self.log_error(f"Error subscribing to conn events: {e.message}")

    def __repr__(self) -> str:
        return f"[{self.cid}]"

    @property
    def http_info(self) -> dict[str, Any]:
        """What auth requests tell of the client's HTTP request (header, host, ...).

        Given as a function by HTTP requests: most never send an auth
        request, so the description is built when the first one does.
        """
        info = self._http_info
        if callable(info):
            info = self._http_info = info()
        return info or {}

    def log_error(self, message: str) -> None:
        log.error("[{cid}] {message}", cid=self.cid, message=message)

    def expand_cid(self, rid: str) -> str:
        return rid.replace(CID_PLACEHOLDER, self.cid) if CID_PLACEHOLDER in rid else rid

    def send_event(self, rid: str, event: str, data: Any) -> None:
        if self.disposing:
            return
        self.send(encode_event(rid, event, data))

    def send_shared(self, message: SharedMessage) -> None:
        """Send a message many connections send alike (see ``shared_sender``)."""
        if self.disposing:
            return
        if self.shared_sender is not None:
            self.shared_sender(message)
        else:
            self.send(message.data)

    # -- client requests

    def set_version(self, protocol: str) -> str:
        """Agree on a protocol version; raises ResError."""
        if protocol == "":
            return _protocol_string()
        parts = protocol.split(".")
        if len(parts) != 3:
            raise errors.INVALID_PARAMS.copy()
        version = 0
        for part in parts:
            if not part.isascii() or not part.isdigit() or int(part) >= 1000:
                raise errors.INVALID_PARAMS.copy()
            version = version * 1000 + int(part)
        if version < 1000000 or version >= 2000000:
            raise errors.UNSUPPORTED_PROTOCOL.copy()
        self.protocol_version = version
        return _protocol_string()

    def get_resource(self, rid: str, callback: ResultCallback) -> None:
        """A get: the resource set once, without keeping a subscription."""
        self._send_resource(rid, callback, keep=False)

    def subscribe_resource(self, rid: str, callback: ResultCallback) -> None:
        """A subscribe: the resource set, and events from now on."""
        self._send_resource(rid, callback, keep=True)

    def _send_resource(self, rid: str, callback: ResultCallback, *, keep: bool) -> None:
        refusals = self.resource_refusals
        try:
            sub = self.subscribe(rid, direct=True)
        except errors.ResError as e:
            callback(None, e)
            return

        def checked(error: errors.ResError | None) -> None:
            if error is not None:
                callback(None, error)
                self.answered(sub, kept=False)
                return

            def ready() -> None:
                error = sub.current_error()
                if error is not None:
                    callback(None, error)
                    self.answered(sub, kept=False)
                    return
                resources = sub.resources()
                if self.resource_refusals != refusals and _lost_to_the_cap(resources):
                    callback(None, RESOURCE_LIMIT_EXCEEDED)
                    self.sent(sub, kept=False)
                    return
                callback(resources.add_to({}), None)
                self.sent(sub, kept=keep)

            sub.on_ready(ready)

        sub.can_get(checked)

    def unsubscribe_resource(self, rid: str, count: int) -> bool:
        if self.disposing:
            return False
        sub = self.subs.get(rid)
        if sub is None or sub.direct < count:
            return False
        self.unsubscribe_direct(sub, count)
        return True

    def call_resource(self, rid: str, method: str, params: Any, callback: ResultCallback) -> None:
        def answered(result: Any, ref_rid: str | None, error: errors.ResError | None) -> None:
            self._call_auth_response(result, ref_rid, error, callback)

        self._call(rid, method, params, answered)

    def new_resource(self, rid: str, params: Any, callback: ResultCallback) -> None:
        def answered(result: Any, ref_rid: str | None, error: errors.ResError | None) -> None:
            if error is not None:
                callback(None, error)
                return
            if ref_rid is None:
                try:
                    ref_rid = codec.legacy_new_rid(result)
                except errors.ResError as e:
                    callback(None, e)
                    return
            if ref_rid is None:
                callback(None, INVALID_NEW_RESPONSE)
                return
            self._resource_result(ref_rid, callback)

        self._call(rid, "new", params, answered)

    def auth_resource(self, rid: str, method: str, params: Any, callback: ResultCallback) -> None:
        name, query = codec.split_rid(self.expand_cid(rid))
        payload = codec.create_request(self.cid, self.token, query=query, params=params, http=self.http_info)

        def answered(result: Any, ref_rid: str | None, _meta: Any, error: errors.ResError | None) -> None:
            self._call_auth_response(result, ref_rid, error, callback)

        self.cache.call(f"auth.{name}.{method}", payload, answered, self.request_trace)

    def _call(self, rid: str, method: str, params: Any,
              callback: Callable[[Any, str | None, errors.ResError | None], None]) -> None:
        sub = self.subs.get(rid) or Subscription(self, rid, None)
        # The call may wait for its access request: it carries the trace of now.
        trace = self.request_trace

        def checked(error: errors.ResError | None) -> None:
            if error is not None:
                callback(None, None, error)
                return
            payload = codec.create_request(self.cid, self.token, query=sub.resource_query, params=params)
            self.cache.call(
                f"call.{sub.resource_name}.{method}", payload,
                lambda result, ref_rid, _meta, error: callback(result, ref_rid, error), trace,
            )

        sub.can_call(method, checked)

    def _call_auth_response(self, result: Any, ref_rid: str | None, error: errors.ResError | None,
                            callback: ResultCallback) -> None:
        if error is not None:
            callback(None, error)
            return
        if self.protocol_version < VERSION_CALL_RESOURCE_RESPONSE:
            callback({"rid": ref_rid} if ref_rid is not None else result, None)
            return
        if ref_rid is None:
            callback({"payload": result}, None)
            return
        self._resource_result(ref_rid, callback)

    def _resource_result(self, ref_rid: str, callback: ResultCallback) -> None:
        refusals = self.resource_refusals
        try:
            sub = self.subscribe(ref_rid, direct=True)
        except errors.ResError as e:
            callback(None, e)
            return

        def checked(error: errors.ResError | None) -> None:
            if error is not None:
                callback({"rid": sub.rid, "errors": {sub.rid: error.to_dict()}}, None)
                self.answered(sub, kept=False)
                return

            def ready() -> None:
                resources = sub.resources()
                if self.resource_refusals != refusals and _lost_to_the_cap(resources):
                    # The call was made: its answer names the resource, which the client does not get.
                    callback({"rid": sub.rid, "errors": {sub.rid: RESOURCE_LIMIT_EXCEEDED.to_dict()}}, None)
                    self.sent(sub, kept=False)
                    return
                callback(resources.add_to({"rid": sub.rid}), None)
                self.sent(sub, kept=True)

            sub.on_ready(ready)

        sub.can_get(checked)

    # -- subscriptions

    def subscribe(self, rid: str, *, direct: bool, throttle: Throttle | None = None,
                  bounded: bool = True) -> Subscription:
        """The connection's subscription of ``rid``, counted if direct; raises ResError.

        A direct subscription is pending until ``answered`` says its response
        went out: only from then on does the client hold the resource through it.
        ``bounded``: a new subscription is refused once the connection holds
        ``maxResources`` (RESOURCE_LIMIT_EXCEEDED).
        """
        if self.disposing:
            raise errors.DISPOSING.copy()
        sub = self.subs.get(rid)
        if sub is None:
            sub = self._new_subscription(rid, throttle, bounded)
            self.cache.subscribe(sub, sub.throttle, self.request_trace)
        if direct:
            if sub.direct >= SUBSCRIPTION_COUNT_LIMIT:
                raise SUBSCRIPTION_LIMIT_EXCEEDED.copy()
            sub.direct += 1
            sub.pending += 1
        return sub

    def subscribe_references(self, rids: tuple[str, ...], parent: Subscription, throttle: Throttle | None,
                             bounded: bool) -> None:
        """``parent``'s resource references ``rids``: each one's subscription, which
        ``parent`` keeps alive, is in ``parent.refs`` (a repeat is counted there).

        Raises ResError (a refusal), with the references before the refused
        one in ``parent.refs``. ``bounded`` as for ``subscribe``: a reference
        the service's event adds to a resource is not, so that the client's
        copy follows the service's. The new subscriptions go to the cache
        together (``ResourceCache.subscribe_all``): a collection may reference
        thousands.
        """
        if self.disposing:
            raise errors.DISPOSING.copy()
        subs = self.subs
        refs = parent.refs
        config = self.context.config
        cap = config.max_resources if bounded else None
        new: list[Subscription] = []
        try:
            for rid in rids:
                if rid in refs:
                    parent.count_reference(rid)
                    continue
                sub = subs.get(rid)
                if sub is None:
                    # _new_subscription, inline: a reference tree may be thousands.
                    if cap is not None and len(subs) >= cap:
                        self.resource_refusals += 1
                        raise RESOURCE_LIMIT_EXCEEDED.copy()
                    sub_throttle = throttle
                    if sub_throttle is None and config.reference_throttle > 0:
                        sub_throttle = Throttle(config.reference_throttle)
                    sub = subs[rid] = Subscription(self, rid, sub_throttle)
                    sub.parent = parent  # a new subscription's first parent (add_parent, inline)
                    new.append(sub)
                else:
                    sub.add_parent(parent)
                refs[rid] = sub
        finally:
            if new:
                self.cache.subscribe_all(new, self.request_trace)

    def _new_subscription(self, rid: str, throttle: Throttle | None, bounded: bool) -> Subscription:
        """A new subscription of ``rid``, kept in ``subs``, its resource not yet asked of the cache."""
        subs = self.subs
        config = self.context.config
        if bounded and len(subs) >= config.max_resources:
            self.resource_refusals += 1
            raise RESOURCE_LIMIT_EXCEEDED.copy()
        if throttle is None and config.reference_throttle > 0:
            throttle = Throttle(config.reference_throttle)
        sub = subs[rid] = Subscription(self, rid, throttle)
        return sub

    def release_reference(self, sub: Subscription, parent: Subscription) -> None:
        """``parent`` no longer references ``sub``."""
        sub.remove_parent(parent)
        if not self.disposing:
            self._collect(sub)

    def sent(self, sub: Subscription, *, kept: bool) -> None:
        """A response carrying ``sub``'s resource set went out: see ``answered``.

        The set is marked sent and the subscription answered before the
        set's queued events go through: a kept subscription is the client's
        by then (an event releasing a reference to it must not take it from
        the client), a get's resources are no longer the client's (their
        events are not sent).
        """
        released = mark_sent([sub])
        self.answered(sub, kept=kept)
        let_events_through(released)

    def answered(self, sub: Subscription, *, kept: bool) -> None:
        """The response to a pending direct subscription of ``sub`` went out.

        ``kept``: it carried the resource and the client holds it from now on
        (subscribe, resource response of a call); otherwise (an error, a get)
        the subscription ends here.
        """
        if self.disposing or sub.pending == 0:
            # The client unsubscribed it (or access removed it) before the response.
            return
        sub.pending -= 1
        if not kept:
            sub.direct -= 1
            self._collect(sub)

    def unsubscribe_direct(self, sub: Subscription, count: int) -> None:
        """The client lets go of ``count`` direct subscriptions of ``sub``.

        Those it got the response of go first; any beyond them are pending
        ones, whose responses no longer count (``answered``).
        """
        if self.disposing or sub.direct == 0:
            return
        sub.direct -= count
        sub.pending = min(sub.pending, sub.direct)
        self._collect(sub)

    def request_access(self, sub: Subscription, callback: Callable[[Access, Any], None]) -> None:
        self.cache.access(sub, self.token, False, callback, self.request_trace)

    def send_requests_now(self) -> None:
        self.context.mq.send_now()

    def _collect(self, root: Subscription) -> None:
        """Release ``root`` and what only it kept; what the client no longer holds is unsent.

        The reference graph decides (``refgraph.collect``); this connection
        forgets the subscriptions it releases.
        """
        subs = self.subs
        for sub in refgraph.collect(root):
            if subs.get(sub.rid) is sub:
                del subs[sub.rid]

    # -- connection events

    def _bus_conn_event(self, subject: str, payload: bytes) -> None:
        # A method, not a closure made per connection (a function, its cells
        # and their tuple): fewer objects per client for the cyclic GC.
        self.work.enqueue(partial(self._on_conn_event, subject, payload))

    def _on_conn_event(self, subject: str, payload: bytes) -> None:
        event = subject[len(self.cid) + 6:]
        if event != "token":
            return
        try:
            token, tid, given = codec.decode_conn_token_event(payload)
        except errors.ResError as e:
            self.log_error(f"Error processing token event: malformed event payload: {e.message}")
            return
        self.set_token(token, tid, given)

    def set_token(self, token: Any, tid: str, given: bool = True) -> None:
        """A new token: every subscription checks its access again.

        As in Resgate, a token event while the connection has no token at all
        only sets it; ``given`` False (no token in the event) clears it.
        """
        had_token = self._token_set
        self.tid = tid
        self.token = token
        self._token_set = given
        if not had_token:
            return
        for sub in list(self.subs.values()):
            sub.reaccess(None)

    def token_reset(self, tids: set[str], subject: str) -> None:
        """system.tokenReset: ask ``subject`` for a new token if ours has a listed tid."""
        if not self.tid or self.tid not in tids:
            return
        payload = codec.create_request(self.cid, self.token, http=self.http_info)

        def answered(_data: bytes | None, error: errors.ResError | None) -> None:
            if error is not None and error.code == errors.CODE_TIMEOUT:
                self.log_error(f"Token reset auth request timeout on subject: {subject}")

        # Its answer is not read: only its timeout is logged (an error, as Resgate's).
        self.cache.request(subject, payload, answered)

    # -- end

    def dispose(self) -> None:
        """The client is gone: release every subscription."""
        if self.disposing:
            return
        self.disposing = True
        self.context.conns.pop(self.cid, None)
        if self._conn_sub is not None:
            self._conn_sub.unsubscribe()
            self._conn_sub = None
        subs, self.subs = self.subs, {}
        for sub in subs.values():
            sub.dispose()


def _lost_to_the_cap(resources: Resources) -> bool:
    """Whether a resource of the set could not be held for the resource cap."""
    return resources.errors is not None and any(
        error["code"] == CODE_RESOURCE_LIMIT_EXCEEDED for error in resources.errors.values())


def _protocol_string() -> str:
    from resgate import PROTOCOL_VERSION

    return PROTOCOL_VERSION
