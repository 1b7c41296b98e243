"""The HTTP API: every resource over REST, on the WebSocket API's connections and cache.

An HTTP request is a short-lived Connection (protocol version latest,
disposed once the response is written), so access, the cache and resource
references behave exactly as for a WebSocket client. As in Resgate:

* ``GET``/``HEAD <api path><resource path>?<query>`` checks ``get`` access
  and answers with the resource and what it references, in the configured
  API encoding (apiencoding.py).
* ``POST <api path><resource path>/<method>`` calls the method with the JSON
  body as parameters; ``PUT``, ``DELETE`` and ``PATCH`` call the method
  mapped to them by ``--putmethod``/``--deletemethod``/``--patchmethod``
  (405 without a mapping). A result is the body (204 when null); a resource
  response answers 200 with its path as ``Location``.
* RES errors map to HTTP statuses (``error_status``), the error object as body.
* ``--headauth`` sends an auth request about the HTTP request before
  anything else; a token the service sets with a ``conn.<cid>.token`` event
  applies to that request.
* Access, auth and call responses may carry meta (meta.py), applied to the
  response, a call's over an access's over an auth's.
* CORS follows ``--alloworigin``; ``OPTIONS`` answers preflights.

All gateway work runs on the work queue; ``render`` only queues it and
returns NOT_DONE_YET, and the response is written from the queue.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import IO, Any, Callable, Protocol
from urllib.parse import unquote_to_bytes

import orjson
from twisted.logger import Logger
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web import http, resource, server
from twisted.web.http_headers import Headers

from resgate import apiencoding, codec, errors
from resgate.apiencoding import CONTENT_TYPE, NOT_FOUND_BODY, encode_error, rid_to_path
from resgate.auth import call_service, header_auth, remote_addr
from resgate.config import Config
from resgate.connection import Connection
from resgate.context import GatewayContext
from resgate.internals import hold_back, read_on
from resgate.meta import DirectResponse, Header, Meta, canonical_header_key, merge_meta, reason_phrase
from resgate.subscription import VERSION_LATEST, Subscription
from resgate.tracecontext import trace_headers
from resgate.tracing import RequestTrace, client_trace

log = Logger(namespace="resgate.web")

#: The largest request body read. Resgate has no limit; a larger body is
#: discarded as it arrives and answered with 413.
MAX_BODY_SIZE = 1024 * 1024

#: HTTP methods that call a method mapped by configuration.
MAPPED_METHODS = (b"PUT", b"DELETE", b"PATCH")

BODY_TOO_LARGE = errors.ResError(errors.CODE_BAD_REQUEST, f"Request body exceeds {MAX_BODY_SIZE} bytes")
INVALID_QUERY_ENCODING = errors.ResError(errors.CODE_BAD_REQUEST, "Query is not valid UTF-8")

# A percent sign that does not start an escape: Go's PathUnescape refuses it.
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")

_STATUS_BY_CODE = {
    errors.CODE_NOT_FOUND: 404,
    errors.CODE_METHOD_NOT_FOUND: 404,
    errors.CODE_TIMEOUT: 404,
    errors.CODE_ACCESS_DENIED: 401,
    errors.CODE_METHOD_NOT_ALLOWED: 405,
    errors.CODE_INTERNAL_ERROR: 500,
    errors.CODE_SERVICE_UNAVAILABLE: 503,
    errors.CODE_FORBIDDEN: 403,
    errors.CODE_SUBJECT_TOO_LONG: 414,
}


def error_status(error: errors.ResError) -> int:
    """The HTTP status of a RES error (400 for any code without its own)."""
    return _STATUS_BY_CODE.get(error.code, 400)


class BoundedBodyRequest(server.Request):
    """A twisted.web request whose body is bounded by MAX_BODY_SIZE.

    Twisted reads the whole body before rendering; beyond the limit the
    rest is discarded as it arrives and ``body_too_large`` is set, so no
    client can make the gateway hold more than the limit.
    """

    body_too_large = False
    #: Called once if the client goes away before the response is finished
    #: (what notifyFinish's errback says, without a Deferred per request).
    on_client_gone: Callable[[], None] | None = None

    def connectionLost(self, reason: Failure) -> None:
        super().connectionLost(reason)
        if self.on_client_gone is not None:
            self.on_client_gone()

    def parseCookies(self) -> None:
        # Twisted parses every request's Cookie header into received_cookies,
        # which nothing here reads: services get the header itself (describe_request).
        return

    def gotLength(self, length: int | None) -> None:
        if length is not None and length > MAX_BODY_SIZE:
            self.body_too_large = True
            length = 0
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self.body_too_large:
            return
        content = self.content
        assert content is not None  # gotLength made it
        if content.tell() + len(data) > MAX_BODY_SIZE:
            self.body_too_large = True
            content.seek(0)
            content.truncate()
            return
        super().handleContentChunk(data)


class ApiHttpRequest(Protocol):
    """What the API reads and writes of a request: twisted.web's
    (``BoundedBodyRequest``) or one the site answers without it (``PlainRequest``)."""

    method: bytes
    uri: bytes
    path: bytes
    requestHeaders: Headers
    responseHeaders: Headers
    defaultContentType: bytes | None
    content: IO[bytes] | None
    body_too_large: bool
    on_client_gone: Callable[[], None] | None

    def getClientAddress(self) -> IAddress: ...

    def setResponseCode(self, code: int) -> None: ...

    def setHeader(self, name: bytes, value: bytes) -> None: ...

    def write(self, data: bytes) -> None: ...

    def finish(self) -> None: ...


# Read once: twisted.web.http is a module proxy (for its deprecated names),
# so each attribute read there is a Python call.
_NO_BODY_CODES = http.NO_BODY_CODES
#: twisted.web's page for an exception in rendering, when the site shows no tracebacks.
PROCESSING_FAILED = b"<html><head><title>Processing Failed</title></head><body><b>Processing Failed</b></body></html>"
_RESPONSES = http.RESPONSES
_status_lines: dict[int, bytes] = {}


def _status_line(code: int) -> bytes:
    """The status line twisted.web writes for ``code``, made once per code."""
    line = _status_lines.get(code)
    if line is None:
        line = b"HTTP/1.1 %d %s\r\n" % (code, _RESPONSES.get(code, b"Unknown Status"))
        if 100 <= code <= 999:  # services choose the status: only a bounded set is kept
            _status_lines[code] = line
    return line


class PlainRequest:
    """A GET or HEAD of the API answered without twisted.web's Request (``site.PlainGet``).

    twisted.web's parse, Request and response writing were a fifth of a
    cached GET. This is the part of a request the API uses, and it writes
    the bytes twisted.web would: the same status line, the headers in the
    order they were set and as ``Headers`` spells them, the body unless the
    method is HEAD or the status has none. Every API response has a
    Content-Length or is a 204 (``ApiRequest._finish``), so none is chunked.
    Head and body go out in one write when the response is finished.
    """

    __slots__ = ("channel", "method", "uri", "path", "requestHeaders", "responseHeaders", "persistent",
                 "defaultContentType", "on_client_gone", "_client", "_code", "_body", "_gone", "_finished")

    #: A GET or HEAD has no body.
    content: IO[bytes] | None = None
    body_too_large = False

    def __init__(self, channel: BoundedLineChannel, method: bytes, uri: bytes, path: bytes,
                 headers: Headers, date: bytes, persistent: bool) -> None:
        self.channel = channel
        self.method = method
        self.uri = uri
        self.path = path
        self.requestHeaders = headers
        # As twisted.web: Connection when the request asked to close, then Date (GatewayRequest).
        self.responseHeaders = Headers({b"date": [date]} if persistent
                                       else {b"connection": [b"close"], b"date": [date]})
        self.persistent = persistent
        self.defaultContentType: bytes | None = None
        self.on_client_gone: Callable[[], None] | None = None
        transport = channel.transport
        assert transport is not None  # a head comes only over a connection
        self._client = transport.getPeer()
        self._code = 200
        self._body: list[bytes] = []
        self._gone = False
        self._finished = False

    def getClientAddress(self) -> IAddress:
        return self._client

    def setResponseCode(self, code: int) -> None:
        self._code = code

    def setHeader(self, name: bytes, value: bytes) -> None:
        self.responseHeaders.setRawHeaders(name, [value])

    def write(self, data: bytes) -> None:
        if not self._gone and self.method != b"HEAD" and self._code not in _NO_BODY_CODES:
            self._body.append(data)

    def finish(self) -> None:
        if self._gone or self._finished:
            return
        self._finished = True
        head = [_status_line(self._code)]
        for name, values in self.responseHeaders.getAllRawHeaders():
            for value in values:
                head.append(b"%s: %s\r\n" % (name, value))
        head.append(b"\r\n")
        transport = self.channel.transport
        assert transport is not None  # connection_lost would have marked this gone
        transport.write(b"".join(head + self._body))
        self.channel.plain_request_done()

    def processing_failed(self) -> None:
        """Log the exception being handled and answer 500, as twisted.web's Request.processingFailed does.

        The site shows no tracebacks (twisted.web's default), so the page is
        the same short one; a request already answered stays as it was.
        """
        log.failure("Unhandled error answering {method} {uri}", method=self.method.decode("ascii"),
                    uri=self.uri.decode("ascii"))
        if self._gone or self._finished:
            return
        self.setResponseCode(500)
        self.setHeader(b"content-type", b"text/html")
        self.setHeader(b"content-length", b"%d" % len(PROCESSING_FAILED))
        self.write(PROCESSING_FAILED)
        self.finish()

    def connection_lost(self) -> None:
        """The client went away before the response was finished: nothing more is written."""
        self._gone = True
        if self.on_client_gone is not None:
            self.on_client_gone()


URI_TOO_LONG = errors.ResError(errors.CODE_BAD_REQUEST, "Request URI too long")
HEADER_TOO_LARGE = errors.ResError(errors.CODE_BAD_REQUEST, "Request header field too large")
HEAD_TIMED_OUT = errors.ResError(errors.CODE_BAD_REQUEST, "Request header timeout")
BODY_TIMED_OUT = errors.ResError(errors.CODE_BAD_REQUEST, "Request body timeout")


@dataclass(frozen=True)
class HttpBounds:
    """How long, in seconds, an HTTP connection may take over each part of a request.

    Resgate bounds none of them (Go's http.Server without timeouts): a
    client could hold a connection for ever by sending nothing, or a byte
    now and then. The figures are the configuration's (docs/configuration.md).
    """

    first_byte: float
    head: float
    body: float
    keep_alive: float

    @classmethod
    def of(cls, config: Config) -> HttpBounds:
        return cls(config.first_byte_timeout / 1000, config.head_timeout / 1000,
                   config.body_timeout / 1000, config.keep_alive_timeout / 1000)


class Awaiting(enum.Enum):
    """What an HTTP connection waits for from its client, and so which bound runs."""

    REQUEST = "the first byte of a request"  # first_byte on a new connection, keep_alive after a response
    HEAD = "the rest of a request's head"
    BODY = "a request's body"
    NOTHING = "nothing: the gateway is answering"  # unbounded; an upgraded WebSocket stays here


class BoundedLineChannel(http.HTTPChannel):
    """twisted.web's HTTP channel, answering over-long lines instead of hanging up,
    and bounding the time a client takes over each part of a request.

    Twisted reads the request line and each header as a line of at most
    ``MAX_LENGTH`` (16 KiB) bytes and drops the connection beyond that,
    leaving the client with no answer. A request line that long (a very
    long query, typically) gets 414 and an error object here, a header
    line 431; the connection closes after either. Its site counts the
    channels open (the status page shows them).

    The time bounds (``HttpBounds``): a head still incomplete ``head``
    seconds after its first byte, or a body ``body`` seconds after its head,
    gets 408 and the connection closes; a connection without a request's
    first byte for ``first_byte`` seconds after connecting, or ``keep_alive``
    seconds after a response, is closed without a word. While the gateway
    answers, and once a WebSocket took the connection over, nothing is bound.

    One timer per connection, moved only when a bound must end sooner than
    it fires: a request on a keep-alive connection just records its deadline,
    and the timer, when it fires, waits on for what is left.
    """

    bounds: HttpBounds
    clock: IReactorTime
    _awaiting = Awaiting.NOTHING
    #: When the current bound ends (clock seconds); None while unbounded, or a head's before it is armed.
    _deadline: float | None = None
    _timer: IDelayedCall | None = None
    #: Ends a close the client does not let finish (it does not read).
    _abort_call: IDelayedCall | None = None

    def connectionMade(self) -> None:
        super().connectionMade()
        # Site.buildProtocol sets channel.site (a GatewaySite); Twisted's stubs leave it out.
        site = self.site  # type: ignore[attr-defined]
        self.bounds, self.clock = site.bounds, site.reactor
        site.http_connections += 1
        self._expect(Awaiting.REQUEST, self.bounds.first_byte)

    #: Before the connection's first read: a plain WebSocket upgrade may skip twisted.web then (site.DirectUpgrade).
    _first_read = True

    #: A GET being answered without twisted.web (site.PlainGet), until its response is written.
    _plain: PlainRequest | None = None
    #: What the client sent meanwhile (the next requests, pipelined), read once it is answered.
    _held: list[bytes] | None = None
    #: Reading stopped because more than twisted.web would hold was held.
    _held_paused = False

    def dataReceived(self, data: bytes) -> None:
        if self._plain is not None:
            self._hold(data)
            return
        if self._first_read:
            self._first_read = False
            upgrade = self.site.direct_upgrade  # type: ignore[attr-defined]
            if upgrade is not None and upgrade.take(self, data):
                return
        if self._awaiting is Awaiting.REQUEST:
            plain_get = self.site.plain_get  # type: ignore[attr-defined]
            if plain_get is not None and plain_get.take(self, data):
                return
            # Most heads arrive in one read and are parsed within it: the
            # head's bound starts below only for one still arriving.
            self._awaiting, self._deadline = Awaiting.HEAD, None
        # Also called with the pipelined bytes held while a request was
        # being answered, once it is done (LineReceiver.setLineMode).
        super().dataReceived(data)
        if self._awaiting is Awaiting.HEAD and self._deadline is None:
            self._expect(Awaiting.HEAD, self.bounds.head)

    def allHeadersReceived(self) -> None:
        super().allHeadersReceived()
        # A body follows a Content-Length other than 0, or chunked (length None).
        if self.length != 0:
            self._expect(Awaiting.BODY, self.bounds.body)

    def allContentReceived(self) -> None:
        self._awaiting, self._deadline = Awaiting.NOTHING, None
        super().allContentReceived()

    def requestDone(self, request: http.Request) -> None:
        if self.persistent:
            # Before Twisted replays pipelined bytes, which begin the next head.
            self._expect(Awaiting.REQUEST, self.bounds.keep_alive)
        super().requestDone(request)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.site.http_connections -= 1  # type: ignore[attr-defined]
        self._stop_timers()
        plain, self._plain, self._held = self._plain, None, None
        if plain is not None:
            plain.connection_lost()
        super().connectionLost(reason)

    def answer_plain(self, request: PlainRequest) -> None:
        """``request`` is answered outside twisted.web: unbounded, as any request being answered."""
        self._plain = request
        self._awaiting, self._deadline = Awaiting.NOTHING, None

    def plain_request_done(self) -> None:
        """The plain request's response is written: wait for the next, and read what came meanwhile.

        Unless the request asked to close: then, as twisted.web, the
        connection closes and what came after it is dropped.
        """
        plain, self._plain = self._plain, None
        assert plain is not None  # only a plain request's finish calls this
        if not plain.persistent:
            self._held = None
            self.loseConnection()
            return
        if self._held_paused:
            self._held_paused = False
            read_on(self)
        self._expect(Awaiting.REQUEST, self.bounds.keep_alive)
        held, self._held = self._held, None
        if held:
            self.dataReceived(b"".join(held))

    def _hold(self, data: bytes) -> None:
        # As twisted.web holds what follows a request it is answering: past
        # its limit, the client is made to wait (TCP backpressure).
        held = self._held
        if held is None:
            held = self._held = []
        held.append(data)
        if not self._held_paused:
            self._held_paused = hold_back(self, sum(map(len, held)))

    def handed_over(self) -> None:
        """A WebSocket took the connection over: no longer an HTTP one, and no bound.

        Its timer would otherwise keep this channel (and the upgrade request)
        alive until the first-byte bound, 10 s by default, after every upgrade.
        """
        self.site.http_connections -= 1  # type: ignore[attr-defined]
        self._awaiting = Awaiting.NOTHING
        self._stop_timers()

    def _stop_timers(self) -> None:
        self._deadline = None
        for timer in (self._timer, self._abort_call):
            if timer is not None and timer.active():
                timer.cancel()
        self._timer = self._abort_call = None

    def _expect(self, awaiting: Awaiting, seconds: float) -> None:
        self._awaiting = awaiting
        deadline = self.clock.seconds() + seconds
        self._deadline = deadline
        timer = self._timer
        if timer is None:
            self._timer = self.callLater(seconds, self._check_deadline)
        elif timer.getTime() > deadline:
            timer.reset(seconds)

    def _check_deadline(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None:
            return
        remaining = deadline - self.clock.seconds()
        if remaining > 0:
            self._timer = self.callLater(remaining, self._check_deadline)
            return
        awaiting, self._awaiting, self._deadline = self._awaiting, Awaiting.NOTHING, None
        if awaiting is Awaiting.REQUEST:
            # Routine, unlike the timeouts below: no "Timing out client" line,
            # but the same abort if the client does not read.
            self._abort_call = self.callLater(self.abortTimeout, self.forceAbortClient)
            self.loseConnection()
            return
        self._answer(408, HEAD_TIMED_OUT if awaiting is Awaiting.HEAD else BODY_TIMED_OUT)
        # Twisted's idle timeout close: graceful, aborted if the client does not read.
        self.timeoutConnection()

    def lineLengthExceeded(self, line: bytes) -> None:
        # A request line starts with a method and a space; a header name
        # can hold no space and ends with a colon.
        separator = re.search(rb"[ :]", line)
        if separator is not None and separator.group() == b" ":
            self._answer(414, URI_TOO_LONG)
        else:
            self._answer(431, HEADER_TOO_LARGE)
        assert self.transport is not None  # lines come only from a connected client
        self.transport.loseConnection()

    def _answer(self, status: int, error: errors.ResError) -> None:
        """Write a whole response with ``error``, telling the client the connection closes."""
        body = encode_error(error)
        assert self.transport is not None  # answers go only to a connected client
        self.transport.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
            % (status, reason_phrase(status).encode(), CONTENT_TYPE, len(body), body))


# --- URL paths -------------------------------------------------------------------


def _path_parts(path: bytes, prefix: bytes) -> list[str] | None:
    """The unescaped parts of the path below ``prefix``, or None if it has none.

    As Resgate: a literal dot is refused (dots separate resource ID parts,
    slashes do in a path), one leading slash is skipped, each part is
    percent-unescaped (so ``%2F`` stays inside its part), and anything that
    is not valid UTF-8 afterwards is refused.
    """
    if len(path) == len(prefix) or not path.startswith(prefix):
        return None
    rest = path[len(prefix):]
    if b"." in rest or _BAD_ESCAPE.search(rest):
        return None
    if rest.startswith(b"/"):
        rest = rest[1:]
    try:
        if b"%" not in rest:  # nothing to unescape: most paths
            return rest.decode("utf-8").split("/")
        return [unquote_to_bytes(part).decode("utf-8") for part in rest.split(b"/")]
    except UnicodeDecodeError:
        return None


def _with_query(rid: str, query: str) -> str:
    return f"{rid}?{query}" if query else rid


def path_to_rid(path: bytes, query: str, prefix: bytes) -> str:
    """The resource ID a GET path names; "" when it names none."""
    parts = _path_parts(path, prefix)
    if parts is None:
        return ""
    return _with_query(".".join(parts), query)


def path_to_rid_method(path: bytes, query: str, prefix: bytes) -> tuple[str, str]:
    """(resource ID, method) a POST path names; ("", "") when it names none."""
    parts = _path_parts(path, prefix)
    if parts is None or len(parts) < 2:
        return "", ""
    return _with_query(".".join(parts[:-1]), query), parts[-1]


def _raw_query(request: ApiHttpRequest) -> str | None:
    """The query as the client sent it (still escaped), or None if it is not UTF-8."""
    _, _, query = request.uri.partition(b"?")
    try:
        return query.decode("utf-8")
    except UnicodeDecodeError:
        return None


# --- What services learn about an HTTP request (auth requests) ------------------------


def describe_request(request: ApiHttpRequest) -> dict[str, Any]:
    """``header``, ``host``, ``remoteAddr`` and ``uri`` as Resgate sends them.

    Header names are canonicalized as Go's net/http does, each with all its
    values; Host is not a header there but ``host``.
    """
    header: Header = {}
    for name, values in request.requestHeaders.getAllRawHeaders():
        key = canonical_header_key(name.decode("latin-1"))
        if key == "Host":
            continue
        header.setdefault(key, []).extend(v.decode("utf-8", "replace") for v in values)
    host_values = request.requestHeaders.getRawHeaders(b"host") or [b""]
    return {
        "header": header,
        "host": host_values[0].decode("utf-8", "replace"),
        "remoteAddr": remote_addr(request.getClientAddress()),
        "uri": request.uri.decode("utf-8", "replace"),
    }


def request_trace_headers(request: ApiHttpRequest) -> dict[str, str] | None:
    """The request's checked trace context (``traceparent``, ``tracestate``); None without a valid one."""
    headers = request.requestHeaders
    traceparent = headers.getRawHeaders(b"traceparent")
    if traceparent is None:
        return None
    tracestate = headers.getRawHeaders(b"tracestate")
    return trace_headers([value.decode("latin-1") for value in traceparent],
                         None if tracestate is None else [value.decode("latin-1") for value in tracestate])


# --- The resource -----------------------------------------------------------------------


class ApiResource(resource.Resource):
    """The twisted.web resource for every path under the API path."""

    isLeaf = True

    def __init__(self, context: GatewayContext) -> None:
        super().__init__()
        self.context = context
        config = context.config
        self.api_path = config.api_path.encode()
        self.encoder = apiencoding.api_encoder(config.api_encoding, config.api_path)
        self.mapped_methods = {b"PUT": config.put_method, b"DELETE": config.delete_method,
                               b"PATCH": config.patch_method}

    def render(self, request: ApiHttpRequest) -> bytes | object:
        _as_api_response(request)
        cors_error = self._set_common_headers(request)
        if request.method == b"OPTIONS":
            return self._preflight(request)
        if cors_error is not None:
            return write_error(request, cors_error)
        if not self.context.available:
            return write_error(request, errors.SERVICE_UNAVAILABLE)
        path = request.path
        if len(path) > len(self.api_path) and path.endswith(b"/"):
            return write_not_found(request)
        query = _raw_query(request)
        if query is None:
            return write_error(request, INVALID_QUERY_ENCODING)
        method = request.method
        metrics = self.context.metrics
        action: str | None
        if method in (b"GET", b"HEAD"):
            metrics.count_http_request("GET")
            rid = path_to_rid(path, query, self.api_path)
            if not codec.is_valid_rid(rid, True):
                return write_not_found(request)
            return ApiRequest(self, request).start(lambda api: api.get(rid))
        if method == b"POST":
            metrics.count_http_request("POST")
            rid, action = path_to_rid_method(path, query, self.api_path)
        else:
            action = self.mapped_methods.get(method)
            if action is None:
                return write_error(request, errors.METHOD_NOT_ALLOWED)
            metrics.count_http_request(method.decode("ascii"))
            rid = path_to_rid(path, query, self.api_path)
        return self._call(request, rid, action)

    def _set_common_headers(self, request: ApiHttpRequest) -> errors.ResError | None:
        """CORS headers for ``--alloworigin``; the error when the Origin is not allowed."""
        config = self.context.config
        headers = request.responseHeaders
        if config.header_auth_method is not None:
            headers.setRawHeaders(b"Access-Control-Allow-Credentials", [b"true"])
        if config.allowed_origins == ["*"]:
            headers.setRawHeaders(b"Access-Control-Allow-Origin", [b"*"])
            if config.refuse_null_origin and not config.origin_allowed(_origin(request)):
                return errors.FORBIDDEN_ORIGIN
            return None
        origin = _origin(request)
        # No Origin (or "null", unless refused): not a CORS-enabled browser, nothing to check.
        if origin is None or (origin == "null" and not config.refuse_null_origin):
            return None
        headers.setRawHeaders(b"Vary", [b"Origin"])
        if config.origin_allowed(origin):
            headers.setRawHeaders(b"Access-Control-Allow-Origin", [origin.encode("latin-1")])
            return None
        headers.setRawHeaders(b"Access-Control-Allow-Origin", [config.allowed_origins[0].encode()])
        return errors.FORBIDDEN_ORIGIN

    def _preflight(self, request: ApiHttpRequest) -> bytes:
        headers = request.responseHeaders
        headers.setRawHeaders(b"Access-Control-Allow-Methods", [self.context.config.allow_methods.encode()])
        asked = request.requestHeaders.getRawHeaders(b"access-control-request-headers")
        if asked:
            headers.setRawHeaders(b"Access-Control-Allow-Headers", [b", ".join(asked)])
        request.setHeader(b"content-length", b"0")
        return b""

    def _call(self, request: ApiHttpRequest, rid: str, action: str) -> bytes | object:
        if not codec.is_valid_rid(rid, True) or not codec.is_valid_rid_part(action):
            return write_not_found(request)
        if getattr(request, "body_too_large", False):
            return write_error(request, BODY_TOO_LARGE, status=413)
        body = request.content.read() if request.content is not None else b""
        params = None
        if body.strip():
            try:
                params = orjson.loads(body)
            except orjson.JSONDecodeError as e:
                return write_error(request, errors.ResError(
                    errors.CODE_BAD_REQUEST, f"Error decoding request body: {e}"))
        return ApiRequest(self, request).start(lambda api: api.call(rid, action, params))


def _origin(request: ApiHttpRequest) -> str | None:
    """The Origin header's first value, as Go's Header.Get in Resgate; None without one."""
    origins = request.requestHeaders.getRawHeaders(b"origin")
    return origins[0].decode("latin-1") if origins else None


def _as_api_response(request: ApiHttpRequest) -> None:
    """Headers as Resgate's: no Server header, no Content-Type unless there is a body."""
    request.defaultContentType = None
    request.responseHeaders.removeHeader(b"server")


def write_not_found(request: ApiHttpRequest) -> bytes:
    return _write_body(request, 404, NOT_FOUND_BODY)


def write_error(request: ApiHttpRequest, error: errors.ResError, status: int | None = None) -> bytes:
    """Answer with ``error`` (a synchronous render result)."""
    return _write_body(request, status or error_status(error), encode_error(error))


def _write_body(request: ApiHttpRequest, status: int, body: bytes) -> bytes:
    _as_api_response(request)
    request.setResponseCode(status)
    request.setHeader(b"content-type", CONTENT_TYPE)
    request.setHeader(b"content-length", b"%d" % len(body))
    # twisted.web drops a HEAD body itself, but logs each time it has to.
    return b"" if request.method == b"HEAD" else body


# --- One HTTP request: a temporary connection ----------------------------------------------


class ApiRequest:
    """An HTTP request served by a temporary Connection, answered once.

    The callbacks write through ``respond``; with them come the priority
    rules of Resgate's temporary connections: a direct meta status wins over
    everything, then an error, then a resource reference (``href``), then a
    body; no body at all is 204.
    """

    def __init__(self, api: ApiResource, request: ApiHttpRequest) -> None:
        self.api = api
        self.context = api.context
        self.request = request
        self.conn: Connection | None = None
        self.auth_meta: Meta | None = None
        # Set once a response was written or the client went away.
        self.done = False

    #: What every request to a service made for this one carries (most have none).
    trace: RequestTrace | None = None

    def start(self, handler: Callable[[ApiRequest], None]) -> object:
        """Queue the work: header auth if configured, then ``handler(self)``."""
        request = self.request
        tracing = self.context.tracing
        headers = request_trace_headers(request)
        if tracing is not None or headers is not None:
            method = request.method.decode("ascii", "replace")
            self.trace = client_trace(tracing, headers, f"HTTP {method}", {
                "http.request.method": method, "url.path": request.path.decode("utf-8", "replace")})
        request.on_client_gone = self._client_gone
        self.context.work.enqueue(lambda: self._open(handler))
        return server.NOT_DONE_YET

    def _open(self, handler: Callable[[ApiRequest], None]) -> None:
        if self.done:
            return
        if not self.context.mq.is_connected:
            self._finish_error(errors.SERVICE_UNAVAILABLE)
            return
        request = self.request
        conn = Connection(self.context, _no_events, lambda: describe_request(request),
                          conn_events=self.context.config.header_auth_method is not None)
        conn.protocol_version = VERSION_LATEST
        conn.request_trace = self.trace
        self.conn = conn
        method = self.context.config.header_auth_method
        if method is None:
            handler(self)
            return

        def authenticated(rid: str | None, error: errors.ResError | None, meta: Meta | None) -> None:
            if self.done:
                return
            if meta is not None and meta.is_direct_response:
                self._finish_direct(DirectResponse(meta, self._href(rid), error))
                return
            self.auth_meta = meta
            handler(self)

        header_auth(conn, method, authenticated)

    def _client_gone(self) -> None:
        # Nothing may be written from now on, even by work already queued;
        # the connection is released on the queue like any gateway state.
        self.done = True
        self.request.on_client_gone = None
        if self.trace is not None:
            self.trace.end("client gone")
        self.context.work.enqueue(self._dispose)

    def _href(self, rid: str | None) -> str:
        return rid_to_path(rid, self.api.context.config.api_path) if rid else ""

    # -- GET and HEAD

    def get(self, rid: str) -> None:
        """Access, then the resource and its references once all are loaded."""
        conn = self.conn
        assert conn is not None  # _open made it before the handler
        try:
            sub = conn.subscribe(rid, direct=True)
        except errors.ResError as e:
            self.respond(error=e)
            return

        def accessed(access: codec.Access, raw_meta: Any) -> None:
            if self.done:
                return
            meta = Meta.decode(raw_meta)
            if meta is not None and meta.is_direct_response:
                self.respond(error=access.error, meta=meta)
                return
            error = access.can_get()
            if error is not None:
                self.respond(error=error, meta=meta)
                return

            def ready() -> None:
                error = sub.current_error()
                if error is not None:
                    self.respond(error=error, meta=meta)
                    return
                self.respond(body=self.api.encoder.encode_resource(sub), meta=meta)

            sub.on_ready(ready)

        conn.cache.access(sub, conn.token, True, accessed, conn.request_trace)

    # -- POST, PUT, DELETE and PATCH

    def call(self, rid: str, method: str, params: Any) -> None:
        """Access, then the call request; a legacy ``new`` result counts as a resource."""
        conn = self.conn
        assert conn is not None  # _open made it before the handler
        # Names the resource for the access request; nothing is subscribed.
        target = Subscription(conn, rid, None)

        def accessed(access: codec.Access, raw_meta: Any) -> None:
            if self.done:
                return
            access_meta = Meta.decode(raw_meta)
            if access_meta is not None and access_meta.is_direct_response:
                self.respond(error=access.error, meta=access_meta)
                return
            error = access.can_call(method)
            if error is not None:
                self.respond(error=error, meta=access_meta)
                return
            payload = codec.create_request(conn.cid, conn.token, query=target.resource_query,
                                           params=params, is_http=True)
            call_service(conn, f"call.{target.resource_name}.{method}", payload,
                         lambda result, ref_rid, call_meta, error: called(
                             result, ref_rid, merge_meta(access_meta, call_meta), error))

        def called(result: Any, ref_rid: str | None, meta: Meta | None, error: errors.ResError | None) -> None:
            if error is None and ref_rid is None and method == "new":
                try:
                    ref_rid = codec.legacy_new_rid(result)
                except errors.ResError as e:
                    error = e
                if ref_rid is not None or error is not None:
                    log.warn("Deprecated: legacy new call response from {subject}",
                             subject=f"call.{target.resource_name}.new")
            if error is not None:
                self.respond(error=error, meta=meta)
            elif ref_rid is not None:
                self.respond(href=self._href(ref_rid), meta=meta)
            else:
                self.respond(body=apiencoding.encode_result(result), meta=meta)

        conn.cache.access(target, conn.token, True, accessed, conn.request_trace)

    # -- the response

    def respond(self, *, body: bytes | None = None, href: str = "",
                error: errors.ResError | None = None, meta: Meta | None = None) -> None:
        """Write the response and dispose the connection."""
        if self.done:
            return
        meta = merge_meta(self.auth_meta, meta)
        if meta is not None:
            meta = meta.without_invalid_status("HTTP")
            if meta.is_direct_response:
                self._finish_direct(DirectResponse(meta, href, error))
                return
            _set_header(self.request, meta.header)
        if error is not None:
            if error.code == errors.CODE_METHOD_NOT_FOUND and self.request.method in MAPPED_METHODS:
                error = errors.METHOD_NOT_ALLOWED
            self._finish_error(error)
        elif href:
            self.request.setHeader(b"location", href.encode())
            self._finish(200, None)
        elif body is not None:
            self._finish(200, body)
        else:
            self._finish(204, None)

    def _finish_error(self, error: errors.ResError) -> None:
        self._finish(error_status(error), encode_error(error))

    def _finish_direct(self, response: DirectResponse) -> None:
        _set_header(self.request, response.header)
        body = encode_error(response.error) if response.error is not None else None
        self._finish(response.status, body)

    def _finish(self, status: int, body: bytes | None) -> None:
        self.done = True
        request = self.request
        # The request and this refer to each other until here: a cycle,
        # which only the cyclic GC would free, per request answered.
        request.on_client_gone = None
        if self.trace is not None:
            self.trace.end(f"HTTP {status}" if status >= 500 else None)
        request.setResponseCode(status)
        if body is not None:
            request.setHeader(b"content-type", CONTENT_TYPE)
            request.setHeader(b"content-length", b"%d" % len(body))
            request.write(body)
        elif status != 204:
            request.setHeader(b"content-length", b"0")
        request.finish()
        self._dispose()

    def _dispose(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.dispose()


def _set_header(request: ApiHttpRequest, header: Header) -> None:
    """Put meta headers (already filtered by meta.py) on the response."""
    headers = request.responseHeaders
    for key, values in header.items():
        encoded = [v.encode("utf-8") for v in values]
        if key == "Set-Cookie":
            for value in encoded:
                headers.addRawHeader(key.encode(), value)
        else:
            headers.setRawHeaders(key.encode(), encoded)


def _no_events(_data: bytes) -> None:
    """An HTTP request's connection sends nothing but its response."""
