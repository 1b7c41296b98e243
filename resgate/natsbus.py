"""The gateway's NATS connection: ``resgate.bus.Bus`` over nats-py.

Requests, event subscriptions, publishes. This is the only module that
imports nats; the rest of the gateway is typed against ``Bus``. Its log
namespace stays ``resgate.mq``, the logger name operators filter on. It
runs nats-py on Twisted's asyncio reactor (one event loop) and hands the
rest of the gateway Deferreds and ``resgate.errors.ResError`` values.

Every message this client receives, replies and events alike, reaches its
handler in the order the connection delivered it (docs/design.md).
nats-py runs one task per subscription, which reorders messages across
subscriptions, so ``_OrderedClient`` takes over nats-py's per-message
dispatch for this module's subscriptions and calls handlers inline.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import inspect
import re
import ssl
from typing import Callable, Mapping, Sequence

import nats.aio.client
from nats.errors import NoServersError
from nats.protocol import command
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from resgate import errors
from resgate.trace import one_line

log = Logger(namespace="resgate.mq")

REQUEST_TIMEOUT = 3.0  # seconds; Resgate's default request timeout
CONNECT_TIMEOUT = 2.0  # seconds per server; nats.go's default
# nats-server's default max_control_line. A longer PUB or SUB line makes the
# server close the connection, so it is refused here (system.subjectTooLong).
MAX_CONTROL_LINE = 4096
# Outgoing bytes queued but not yet handed to the socket. Bounded so a stalled
# NATS connection cannot grow the gateway's memory; roomy for bursts such as a
# client subscribing to thousands of resources at once.
MAX_PENDING_BYTES = 8 * 1024 * 1024

NOT_CONNECTED = errors.internal_error("not connected to NATS")
BUFFER_FULL = errors.internal_error("NATS outgoing buffer full")

# A reply whose first byte is an ASCII letter is a pre-response (Resgate's rule).
_A, _Z = ord("a"), ord("z")
# One key:"value" pair of a pre-response, in Go struct-tag syntax.
_META_PAIR = re.compile(rb' *([^\x00-\x20\x7f":]+):"((?:[^"\\]|\\.)*)"')
_INTEGER = re.compile(rb"[+-]?[0-9]+")
_NO_RESPONDERS = b"NATS/1.0 503"
# Dot-separated non-empty tokens without whitespace; a subscription may also
# use "*" tokens and a last ">" token.
_SUBJECT = re.compile(r"[^ \t\r\n.]+(?:\.[^ \t\r\n.]+)*")
_PATTERN = re.compile(r"(?:[^ \t\r\n.*>]+|\*)(?:\.(?:[^ \t\r\n.*>]+|\*))*(?:\.>)?|>")
_USERINFO = re.compile(r"(^|//)[^/@]*@")
_SSL_DECORATION = re.compile(r"^\[[^\]]*\] *| *\([^()]*\.c:\d+\)$")
#: A creds file is a few kilobytes; reading is bounded all the same.
MAX_CREDS_FILE_SIZE = 64 * 1024
_CREDS_SECTIONS = ((b"-----BEGIN NATS USER JWT-----", "user JWT"),
                   (b"-----BEGIN USER NKEY SEED-----", "user nkey seed"))

Route = Callable[[bytes, bytes, "bytes | None"], None]

_HOOK_PARAMS = ("self", "sid", "subject", "reply", "data", "headers")
_CLOSE_PARAMS = ("self", "status", "do_cbs")
_CLIENT_STATE = ("_sid", "_pending", "_pending_data_size", "_max_pending_size", "_flush_queue", "_ps")


#: How long the connect-time self-test waits for its message to come back through the inbox.
SELF_TEST_TIMEOUT = CONNECT_TIMEOUT
#: The inbox token of the self-test's message; request tokens start at 1.
_SELF_TEST_TOKEN = 0


class MQConnectError(Exception):
    """The NATS connection could not be made; the message is one line."""


def check_nats_hook(client_class: type = nats.aio.client.Client) -> None:
    """Fail loudly unless nats-py has the private hooks this module relies on.

    ``_OrderedClient`` overrides ``Client._process_msg`` and ``Client._close``
    and writes to the client's pending buffer directly; a nats-py release
    that changes those would otherwise break message order silently. The
    shapes are checked here, at import; that the parser still calls the
    hook is checked on every connect (``NatsBus`` self-test).
    """
    hook = getattr(client_class, "_process_msg", None)
    close = getattr(client_class, "_close", None)
    state = vars(client_class()) if hook is not None else {}
    if (
        hook is None
        or close is None
        or not inspect.iscoroutinefunction(hook)
        or not inspect.iscoroutinefunction(close)
        or tuple(inspect.signature(hook).parameters) != _HOOK_PARAMS
        or tuple(inspect.signature(close).parameters) != _CLOSE_PARAMS
        or not all(name in state for name in _CLIENT_STATE)
        or not isinstance(getattr(state["_ps"], "buf", None), bytearray)
    ):
        raise ImportError(
            f"resgate.natsbus overrides nats-py's Client._process_msg{_HOOK_PARAMS[1:]} and "
            f"Client._close{_CLOSE_PARAMS[1:]} and uses its pending buffer, which nats-py "
            f"{nats.aio.client.__version__} does not have; install a nats-py version in the range "
            "setup.cfg names"
        )


check_nats_hook()


class _OrderedClient(nats.aio.client.Client):
    """nats-py's client, with ordered inline dispatch and synchronous writes.

    Messages for sids in ``routes`` go straight to their route, in socket
    order, and never enter nats-py's per-subscription queues. PUB, SUB and
    UNSUB are appended to nats-py's pending buffer without awaiting, so a
    SUB queued before a request's PUB reaches the server first.
    """

    def __init__(self, read_handled: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.routes: dict[int, Route] = {}
        self.dispatched = 0
        self.read_handled = read_handled

    async def _process_msg(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> None:
        route = self.routes.get(sid)
        if route is None:
            # nats-py types headers as bytes but passes None for a MSG without them.
            await super()._process_msg(sid, subject, reply, data, headers)  # type: ignore[arg-type]
            return
        self.dispatched += 1
        try:
            route(subject, data, headers)
        except Exception:
            # An exception here would end nats-py's read loop for good.
            log.failure("NATS message handler failed for {subject}", subject=subject.decode(errors="replace"))
        if self.read_handled is not None and not self.has_unread():
            try:
                self.read_handled()
            except Exception:
                log.failure("Sending what a NATS read's messages wrote")

    def has_unread(self) -> bool:
        """Whether the parser holds more of what was read than the message being handled."""
        return bool(self._ps.buf)

    async def _close(self, status: int, do_cbs: bool = True) -> None:
        # When the connection is lost, nats-py's read loop calls _close, and
        # before 2.16 _close cancels the read loop's own task, so it never got
        # to the closed callback (a lost connection went unnoticed). Shielded,
        # it runs in a task of its own and always reaches the callbacks.
        await asyncio.shield(super()._close(status, do_cbs))

    def publish_now(self, subject: str, reply: str, payload: bytes,
                    headers: Mapping[str, str] | None = None) -> None:
        """Queue a PUB, an HPUB with ``headers``; raises ResError instead of blocking or
        sending what the server rejects."""
        if headers is None:
            cmd = command.pub_cmd(subject, reply, payload)
            body = len(payload)
        else:
            header = _encode_headers(headers)
            cmd = command.hpub_cmd(subject, reply, header, payload)
            body = len(header) + len(payload)
        # nats-server counts a message's headers in its payload size.
        if body > self.max_payload:
            raise errors.internal_error(
                f"payload of {body} bytes exceeds NATS max_payload of {self.max_payload} bytes"
            )
        if len(cmd) - body - 2 > MAX_CONTROL_LINE:
            raise errors.SUBJECT_TOO_LONG.copy()
        if self._pending_data_size + len(cmd) > self._max_pending_size:
            raise BUFFER_FULL.copy()
        self._queue(cmd)

    def subscribe_now(self, subject: str, route: Route) -> int:
        """Queue a SUB whose messages go to ``route``; returns its sid."""
        cmd = command.sub_cmd(subject, "", self._sid + 1)
        if len(cmd) > MAX_CONTROL_LINE:
            raise errors.SUBJECT_TOO_LONG.copy()
        self._queue(cmd)
        self._sid += 1
        self.routes[self._sid] = route
        return self._sid

    def unsubscribe_now(self, sid: int) -> None:
        """Stop routing ``sid`` at once and queue its UNSUB."""
        if self.routes.pop(sid, None) is not None and self.is_connected:
            self._queue(command.unsub_cmd(sid, 0))

    def write_pending(self) -> None:
        """Write the commands queued so far to the socket now, as the flusher task would once it runs.

        Not while the socket's own buffer holds data: then the server is not
        keeping up, and the flusher, which waits for that buffer to drain,
        keeps the pending buffer and its bound in charge.
        """
        if not self._pending or not self.is_connected:
            return
        writer = getattr(self._transport, "_io_writer", None)  # nats-py's TCP (and TLS) transport
        if writer is None or writer.transport.get_write_buffer_size():
            return
        writer.writelines(self._pending)
        self._pending = []
        self._pending_data_size = 0

    def _queue(self, cmd: bytes) -> None:
        # As nats-py's _send_command and _flush_pending do, minus the awaits:
        # the flusher task writes everything pending once kicked.
        if not self.is_connected:
            raise NOT_CONNECTED.copy()
        self._pending.append(cmd)
        self._pending_data_size += len(cmd)
        flush_queue = self._flush_queue
        assert flush_queue is not None  # nats-py makes it on connect
        if flush_queue.empty():
            flush_queue.put_nowait(asyncio.get_running_loop().create_future())


#: How a request's outcome is given: ``respond(reply, None)`` or ``respond(None, error)``.
Respond = Callable[["bytes | None", "errors.ResError | None"], None]


class _Request:
    """A request waiting for its reply."""

    __slots__ = ("token", "inbox", "respond", "deadline", "extension")

    def __init__(self, token: int, inbox: str, respond: Respond, deadline: float) -> None:
        self.token = token
        self.inbox = inbox
        self.respond = respond
        # None once the request left the shared deadline queue (answered or extended).
        self.deadline: float | None = deadline
        # Own timer once a pre-response set a timeout of its own.
        self.extension: IDelayedCall | None = None


class NatsSubscription:
    """Interest in a subject; its messages reach the handler in connection order."""

    __slots__ = ("subject", "_client", "_nc", "_handler", "_sid")

    def __init__(
        self, client: NatsBus, nc: _OrderedClient, subject: str, handler: Callable[[str, bytes], None]
    ) -> None:
        self.subject = subject
        self._client = client
        self._nc = nc
        self._handler = handler
        self._sid = nc.subscribe_now(subject, self._deliver)

    def unsubscribe(self) -> None:
        """Stop delivery at once; safe to call more than once or after the connection is gone."""
        if self._client.trace:
            log.debug("U=> {subject}", subject=self.subject, resgate_trace=True)
        self._nc.unsubscribe_now(self._sid)

    def _deliver(self, subject: bytes, data: bytes, headers: bytes | None) -> None:
        name = subject.decode()
        if self._client.trace:
            log.debug("=>> {subject}: {payload}", subject=name, payload=one_line(data), resgate_trace=True)
        self._handler(name, data)


class NatsBus:
    """The gateway's one NATS connection.

    There is no automatic reconnect (as Resgate, which uses NoReconnect):
    when the connection is lost, cached resources are stale, pending requests
    fail and ``on_lost`` is called; the owner decides when to connect again.
    """

    def __init__(
        self,
        url: str,
        *,
        creds: str | None = None,
        cert: str | None = None,
        key: str | None = None,
        root_cas: Sequence[str] = (),
        request_timeout: float = REQUEST_TIMEOUT,
        reactor: IReactorTime | None = None,
        trace: bool = False,
        read_handled: Callable[[], None] | None = None,
    ) -> None:
        """``read_handled`` runs each time the last whole message of a read was handled
        (``has_unread`` false): what those messages made the gateway write can go out then."""
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.url = url
        self.request_timeout = request_timeout
        self.trace = trace
        self.on_lost: Callable[[str], None] | None = None
        self._read_handled = read_handled
        self._creds = creds
        self._cert = cert
        self._key = key
        self._root_cas = tuple(root_cas)
        self._clock: IReactorTime = reactor
        self._nc: _OrderedClient | None = None
        # The cluster's other nodes, as the lost connection's servers told of them.
        self._discovered: list[str] = []
        self._inbox_prefix = ""
        self._last_token = 0
        self._requests: dict[int, _Request] = {}
        # All requests share one timeout, so arrival order is deadline order.
        self._deadlines: collections.deque[_Request] = collections.deque()
        self._timer: IDelayedCall | None = None
        # Set while connect's self-test waits for its message (see _self_test).
        self._self_test_arrival: asyncio.Future[None] | None = None

    @property
    def is_connected(self) -> bool:
        """Whether requests can be sent now (False before connect, after close or loss)."""
        return self._nc is not None and self._nc.is_connected

    @property
    def server(self) -> str | None:
        """The node in use (a cluster's node may differ from the configured URL), credentials hidden."""
        return self._connected_url(self._nc) if self.is_connected and self._nc is not None else None

    @property
    def dispatched(self) -> int:
        """Messages the ordered dispatcher delivered on the current connection."""
        return self._nc.dispatched if self._nc is not None else 0

    def connect(self) -> Deferred[None]:
        """Connect to one of the servers of ``url`` (comma-separated).

        The servers are tried in random order, as Resgate's NATS client does,
        to spread gateways over a cluster. After a lost connection, the
        cluster nodes its servers told of are tried too, so that a gateway
        configured with one node's URL can carry on through the others.
        Fails with MQConnectError.
        """
        from twisted.internet import reactor
        from twisted.internet.asyncioreactor import AsyncioSelectorReactor

        # nats-py needs the asyncio loop to run; under any other reactor it never would.
        if not isinstance(reactor, AsyncioSelectorReactor):
            return fail(MQConnectError("NATS needs Twisted's asyncio reactor"))
        if self._nc is not None:
            return fail(MQConnectError(f"already connected to NATS at {self._safe_url()}"))
        return Deferred.fromFuture(asyncio.ensure_future(self._connect()))

    def request(self, subject: str, payload: bytes) -> Deferred[bytes]:
        """``send_request`` as a Deferred: the reply payload, or a ResError.

        Cancelling the Deferred forgets the request.
        """
        token = 0
        d: Deferred[bytes] = Deferred(lambda _: self._forget(token))

        def respond(reply: bytes | None, error: errors.ResError | None) -> None:
            if error is None:
                assert reply is not None  # a reply or an error
                d.callback(reply)
            else:
                d.errback(error)

        token = self.send_request(subject, payload, respond)
        return d

    def send_request(self, subject: str, payload: bytes, respond: Respond,
                     headers: Mapping[str, str] | None = None) -> int:
        """Send a request; ``respond(reply, None)`` or ``respond(None, error)`` once.

        ``headers`` (trace context) go as NATS headers, in an HPUB; without
        them the request is the PUB it always was.

        Errors are ResErrors: TIMEOUT after ``request_timeout`` (or a
        pre-response's timeout), NOT_FOUND when nobody listens,
        SUBJECT_TOO_LONG when the PUB would not fit NATS's control line; one
        found before sending is given at once. Returns the request's token
        (0 when it was not sent). The gateway's hot paths use this rather
        than ``request``: no Deferred per request.
        """
        nc = self._nc
        if nc is None:
            respond(None, NOT_CONNECTED)
            return 0
        try:
            _check_subject(subject)
        except errors.ResError as e:
            respond(None, e)
            return 0
        self._last_token += 1
        token = self._last_token
        inbox = f"{self._inbox_prefix}{token}"
        try:
            nc.publish_now(subject, inbox, payload, headers)
        except errors.ResError as e:
            respond(None, e)
            return 0
        if self.trace:
            log.debug("<== ({inbox}) {subject}: {payload}", inbox=inbox[-6:], subject=subject,
                      payload=one_line(payload), resgate_trace=True)
        request = _Request(token, inbox, respond, self._clock.seconds() + self.request_timeout)
        self._requests[token] = request
        self._deadlines.append(request)
        if self._timer is None:
            self._timer = self._clock.callLater(self.request_timeout, self._on_deadline)
        return token

    def subscribe(self, subject: str, handler: Callable[[str, bytes], None]) -> NatsSubscription:
        """Subscribe at once: the SUB is queued before this returns, ahead of any later request.

        ``handler(subject, payload)`` runs inline, in connection order.
        Raises ResError.
        """
        nc = self._nc
        if nc is None:
            raise NOT_CONNECTED.copy()
        _check_subject(subject, wildcards=True)
        subscription = NatsSubscription(self, nc, subject, handler)
        if self.trace:
            log.debug("S=> {subject}", subject=subject, resgate_trace=True)
        return subscription

    def publish(self, subject: str, payload: bytes, reply: str | None = None) -> None:
        """Queue a message for the server; raises ResError."""
        nc = self._nc
        if nc is None:
            raise NOT_CONNECTED.copy()
        _check_subject(subject)
        if reply is not None:
            _check_subject(reply)
        nc.publish_now(subject, reply or "", payload)
        if self.trace:
            log.debug("<== {subject}: {payload}", subject=subject, payload=one_line(payload), resgate_trace=True)

    def has_unread(self) -> bool:
        """Whether nats-py's parser holds more of what it read than the message being handled.

        It hands over each message as soon as it is parsed, the rest of the
        read still in its buffer: a burst of events read at once is there.
        """
        nc = self._nc
        return nc is not None and nc.has_unread()

    def send_now(self) -> None:
        """Write the queued PUB, SUB and UNSUB commands now, not when nats-py's flusher task next runs."""
        if self._nc is not None:
            self._nc.write_pending()

    def close(self) -> Deferred[None]:
        """Close the connection; pending requests fail with DISPOSING. Idempotent."""
        nc = self._nc
        if nc is None:
            return succeed(None)
        self._drop(nc, errors.DISPOSING)
        return Deferred.fromFuture(asyncio.ensure_future(nc.close()))

    async def _connect(self) -> None:
        nc = _OrderedClient(self._read_handled)
        last_error: BaseException | None = None

        async def on_error(error: Exception) -> None:
            nonlocal last_error
            last_error = error
            if nc is self._nc:
                log.warn("NATS error: {error}", error=_describe(error))

        async def on_closed() -> None:
            self._on_closed(nc)

        credentials = self._user_credentials()
        tls = self._tls_context()
        try:
            await nc.connect(
                servers=self._servers(),
                error_cb=on_error,
                closed_cb=on_closed,
                allow_reconnect=False,
                # nats-py tries each server of the list up to twice, then gives up.
                max_reconnect_attempts=1,
                reconnect_time_wait=0,
                # nats-py types it int; it goes to asyncio.wait_for, which takes a float.
                connect_timeout=CONNECT_TIMEOUT,  # type: ignore[arg-type]
                pending_size=MAX_PENDING_BYTES,
                user_credentials=credentials,
                tls=tls,
            )
        except Exception as e:
            if nc.is_connecting:
                # The socket is open but the handshake failed. nats-py's close
                # never returns after a failed TLS handshake, so it is bounded.
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(nc.close(), CONNECT_TIMEOUT)
            cause = last_error if isinstance(e, NoServersError) and last_error is not None else e
            reason = self._tls_reason(cause, nc) or _describe(cause)
            raise MQConnectError(f"cannot connect to NATS at {self._safe_url()}: {reason}") from None
        self._nc = nc
        self._inbox_prefix = nc.new_inbox() + "."
        nc.subscribe_now(self._inbox_prefix + "*", self._on_reply)
        try:
            await self._self_test(nc)
        except MQConnectError:
            self._drop(nc, errors.DISPOSING)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(nc.close(), CONNECT_TIMEOUT)
            raise
        log.info("Connected to NATS at {url}", url=self._connected_url(nc))

    async def _self_test(self, nc: _OrderedClient) -> None:
        """Send one message to the gateway's own inbox and wait for it to come back.

        It proves that nats-py's parser still hands messages to
        ``_OrderedClient._process_msg``; without that every request would
        silently time out. Raises MQConnectError (one line) if it does not.
        """
        arrived: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._self_test_arrival = arrived
        try:
            nc.publish_now(f"{self._inbox_prefix}{_SELF_TEST_TOKEN}", "", b"")
            await asyncio.wait_for(asyncio.shield(arrived), SELF_TEST_TIMEOUT)
            nc.dispatched = 0  # counts the gateway's own traffic only
        except (asyncio.TimeoutError, errors.ResError):
            raise MQConnectError(
                f"nats-py {nats.aio.client.__version__} does not deliver messages to the gateway's "
                f"dispatch hook (a message to its own inbox did not come back within "
                f"{SELF_TEST_TIMEOUT:g} s); install a nats-py version in the range setup.cfg names"
            ) from None
        finally:
            self._self_test_arrival = None

    def _servers(self) -> list[str]:
        """The configured servers, then the other cluster nodes the last connection learned of."""
        servers = [server.strip() for server in self.url.split(",")]
        # Nodes of one cluster share their users: credentials in the URL hold for all of them.
        userinfo = next((server.partition("//")[2].rpartition("@")[0] + "@" for server in servers
                         if "@" in server.partition("//")[2]), "")
        return servers + [url.replace("//", "//" + userinfo, 1) for url in self._discovered]

    def _user_credentials(self) -> str | None:
        if not self._creds:
            return None
        # nats-py reads the file only once the server asks for it, and spins
        # forever on a file without a user JWT: check it before connecting.
        try:
            with open(self._creds, "rb") as f:
                text = f.read(MAX_CREDS_FILE_SIZE)
        except OSError as e:
            raise MQConnectError(f"cannot read NATS creds file {self._creds}: {_describe(e)}") from None
        for marker, what in _CREDS_SECTIONS:
            if marker not in text:
                raise MQConnectError(f"NATS creds file {self._creds} has no {what} ({marker.decode()} missing)")
        return self._creds

    def _tls_reason(self, cause: BaseException, nc: _OrderedClient) -> str | None:
        """Why a TLS connection failed, in an operator's terms; None if TLS is not the reason."""
        if isinstance(cause, ssl.SSLCertVerificationError):
            return (f"the server's certificate is not trusted ({cause.verify_message}); "
                    "name its CA with --natsrootca (natsRootCAs)")
        # A server that verifies clients says so in its INFO; when it then drops
        # the handshake (an alert, or just a closed socket), the client
        # certificate is the reason.
        server_info = getattr(nc, "_server_info", None) or {}
        if not server_info.get("tls_verify") or not isinstance(cause, (ssl.SSLError, ConnectionError)):
            return None
        if not self._cert:
            return "the server requires a client certificate: set --natscert and --natskey (natsCert, natsKey)"
        return f"the server rejected the client certificate {self._cert} ({_describe(cause)})"

    def _tls_context(self) -> ssl.SSLContext | None:
        """A client TLS context from cert/key/root CAs, or None for nats-py's default."""
        if not (self._cert or self._key or self._root_cas):
            return None
        if bool(self._cert) != bool(self._key):
            missing = "key" if self._cert else "certificate"
            raise MQConnectError(
                f"NATS client TLS needs both a certificate and a key; the {missing} is missing"
            )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            if self._root_cas:
                for ca in self._root_cas:
                    context.load_verify_locations(cafile=ca)
            else:
                context.load_default_certs()
            if self._cert:
                context.load_cert_chain(self._cert, self._key)
        except (OSError, ssl.SSLError) as e:
            raise MQConnectError(f"cannot load NATS TLS files: {_describe(e)}") from None
        return context

    def _safe_url(self) -> str:
        """The server list without user, password or token."""
        return ",".join(_USERINFO.sub(r"\1***@", server.strip()) for server in self.url.split(","))

    def _connected_url(self, nc: _OrderedClient) -> str:
        """The server ``nc`` is connected to, without user, password or token.

        One of a configured list, or a cluster node learned after a lost
        connection: the operator sees which node the gateway uses.
        """
        url = nc.connected_url
        return _USERINFO.sub(r"\1***@", url.geturl()) if url is not None else self._safe_url()

    def _on_reply(self, subject: bytes, data: bytes, headers: bytes | None) -> None:
        try:
            token = int(subject[len(self._inbox_prefix):])
        except ValueError:
            return
        request = self._requests.get(token)
        if request is None:
            arrival = self._self_test_arrival
            if token == _SELF_TEST_TOKEN and arrival is not None and not arrival.done():
                arrival.set_result(None)
            return
        no_responders = not data and headers is not None and headers.startswith(_NO_RESPONDERS)
        if self.trace:
            if no_responders:
                log.debug("x=> ({inbox}) No responders", inbox=request.inbox[-6:], resgate_trace=True)
            else:
                log.debug("==> ({inbox}): {payload}", inbox=request.inbox[-6:], payload=one_line(data),
                          resgate_trace=True)
        if data and _A <= (data[0] | 32) <= _Z:
            self._apply_pre_response(request, data)
            return
        self._forget(token)
        if no_responders:
            _answer(request, None, errors.NOT_FOUND)
        else:
            _answer(request, data, None)

    def _apply_pre_response(self, request: _Request, meta: bytes) -> None:
        """Give the request the pre-response's timeout, counted from now; ignore bad meta."""
        milliseconds = _meta_timeout(meta)
        if milliseconds is None:
            return
        delay = max(milliseconds, 0) / 1000
        if request.extension is None:
            request.deadline = None
            request.extension = self._clock.callLater(delay, self._time_out, request)
        else:
            request.extension.reset(delay)

    def _forget(self, token: int) -> None:
        """Stop tracking a request (answered or cancelled by its caller)."""
        request = self._requests.pop(token, None)
        if request is None:
            return
        request.deadline = None
        if request.extension is not None and request.extension.active():
            request.extension.cancel()
        # Replies mostly come in request order, so this keeps the queue short.
        # The timer stays: it finds the queue empty when it fires, which costs
        # less than cancelling and arming one for each request of a quiet client.
        queue = self._deadlines
        while queue and queue[0].deadline is None:
            queue.popleft()

    def _on_deadline(self) -> None:
        self._timer = None
        now = self._clock.seconds()
        queue = self._deadlines
        expired = []
        while queue and (queue[0].deadline is None or queue[0].deadline <= now):
            request = queue.popleft()
            if request.deadline is not None:
                expired.append(request)
        if queue:
            deadline = queue[0].deadline
            assert deadline is not None  # the loop stops at a pending deadline
            self._timer = self._clock.callLater(deadline - now, self._on_deadline)
        for request in expired:
            self._time_out(request)

    def _time_out(self, request: _Request) -> None:
        # A callback of an earlier timeout may have closed the client.
        if self._requests.pop(request.token, None) is not request:
            return
        request.deadline = None
        if self.trace:
            log.debug("x=> ({inbox}) Request timeout", inbox=request.inbox[-6:], resgate_trace=True)
        _answer(request, None, errors.TIMEOUT)

    def _on_closed(self, nc: _OrderedClient) -> None:
        """nats-py closed a connection; if it was the live one, it was lost."""
        if nc is not self._nc:
            return
        reason = f"lost NATS connection: {_describe(nc.last_error)}"
        log.warn("{reason}", reason=reason)
        # nats-py learned them from the servers' INFO (connect_urls); without
        # its own reconnects it never uses them, the next connect does.
        self._discovered = [uri.geturl() for uri in nc.discovered_servers]
        self._drop(nc, errors.internal_error(reason))
        if self.on_lost is not None:
            try:
                self.on_lost(reason)
            except Exception:
                log.failure("on_lost handler failed")

    def _drop(self, nc: _OrderedClient, error: errors.ResError) -> None:
        """Forget the connection and fail every pending request with ``error``."""
        self._nc = None
        nc.routes.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._deadlines.clear()
        requests, self._requests = self._requests, {}
        for request in requests.values():
            if request.extension is not None and request.extension.active():
                request.extension.cancel()
            _answer(request, None, error)


def _answer(request: _Request, reply: bytes | None, error: errors.ResError | None) -> None:
    """Give a request its outcome; a failing callback is logged, NATS dispatch goes on."""
    try:
        request.respond(reply, error)
    except Exception:
        log.failure("Handling the reply to a NATS request")


_HEADER_BREAKS = re.compile(r"[\r\n:]")


def _encode_headers(headers: Mapping[str, str]) -> bytes:
    """A NATS header block: ``NATS/1.0``, then one ``Key: value`` line each; raises ResError.

    A key or value that could break out of its line (or a key with a
    colon) is refused, never sent: the server would take it for another header.
    """
    lines = [b"NATS/1.0\r\n"]
    for key, value in headers.items():
        if not key or _HEADER_BREAKS.search(key) or "\r" in value or "\n" in value:
            raise errors.internal_error(f"invalid NATS header {key!r:.80}")
        try:
            lines.append(f"{key}: {value}\r\n".encode("ascii"))
        except UnicodeEncodeError:
            raise errors.internal_error(f"NATS header {key!r:.80} is not ASCII") from None
    lines.append(b"\r\n")
    return b"".join(lines)


def _check_subject(subject: str, wildcards: bool = False) -> None:
    """Refuse subjects nats-server would reject.

    The server answers those with -ERR, and nats-py closes the connection on any -ERR.
    """
    if (_PATTERN if wildcards else _SUBJECT).fullmatch(subject) is None:
        raise errors.internal_error(f"invalid NATS subject {subject!r:.80}")


def _meta_timeout(meta: bytes) -> int | None:
    """The ``timeout:"ms"`` value of a pre-response, read as Go reads a struct tag."""
    position = 0
    while True:
        pair = _META_PAIR.match(meta, position)
        if pair is None:
            return None
        if pair[1] == b"timeout":
            return int(pair[2]) if _INTEGER.fullmatch(pair[2]) else None
        position = pair.end()


def _describe(error: BaseException | None) -> str:
    """What went wrong, on one line, without nats-py's prefix."""
    if error is None:
        return "connection closed"
    if isinstance(error, ConnectionRefusedError) or getattr(error, "errno", None) == errno.ECONNREFUSED:
        return "connection refused"
    if isinstance(error, asyncio.TimeoutError):
        return "timed out"
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {error.verify_message}"
    if isinstance(error, ssl.SSLError):
        # "[SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert unknown ca (_ssl.c:2580)" -> "tlsv1 alert unknown ca"
        return _SSL_DECORATION.sub("", str(error.args[-1] if error.args else error)).strip() or "TLS error"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = str(error).removeprefix("nats: ").strip("'") or type(error).__name__
    return " ".join(text.split())
