"""ressvc: a small helper for writing RES services in Python on Twisted.

The examples beside this file use it; it is short enough to read in one go.
A service registers handlers for resource patterns, connects to NATS, and
publishes events::

    from ressvc import Service, Model, run

    service = Service(reset=["example.>"])

    @service.get("example.model")
    def get_model(request):
        return Model({"message": "Hello, World!"})

    @service.access("example.model")
    def access(request):
        return {"get": True}

    run(service, page=Path(__file__).with_name("index.html"), port=8081)

Patterns are resource names whose tokens may be ``$name`` placeholders
(``library.book.$id`` matches ``library.book.42``; the handler finds
``request.path["id"] == "42"``) and, for access handlers, a last ``>``
token. Handlers return what the RES service protocol calls a result:

- get: ``Model(dict)`` or ``Collection(list)``;
- access: a dict such as ``{"get": True, "call": "*"}``;
- call and auth: any JSON value (``None`` for an empty success), or
  ``Resource(rid)`` to point the client at a resource.

A handler signals an error by raising ``ResError`` (``NotFound()``,
``InvalidParams("...")``, ``AccessDenied()``, or any code). Any other
exception becomes ``system.internalError`` and is logged. A handler may
return a Deferred or be an ``async def``; the reply goes out when it fires.
Values may hold ``Ref(rid)`` (``{"rid": rid}``) and ``SoftRef(rid)``.

Events (``change``, ``add``, ``remove``, ``set_token``, ``reset``) are
published in the order they are made, and before the reply of the request
whose handler made them: a client sees a change event before the result of
the call that caused it.

``run()`` parses the command line of an example (``--nats``, ``--addr``,
``--port``, ``--resgate``), connects, serves the page with ``static_site()``
and prints ``Client available at http://HOST:PORT`` once both are up.

Everything runs on Twisted's asyncio reactor, since nats-py is asyncio:
``run()`` installs it; a program of its own installs it before importing
``twisted.internet.reactor``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

__all__ = [
    "Service", "Request", "Model", "Collection", "Ref", "SoftRef", "Resource", "DELETE",
    "ResError", "NotFound", "InvalidParams", "AccessDenied", "static_site", "run",
    "RESCLIENT_JS",
]

#: ResClient's browser bundle, installed by ``npm ci`` in examples/ (scripts/setup).
RESCLIENT_JS = Path(__file__).resolve().parent / "node_modules" / "resclient" / "dist" / "resclient.min.js"

_KINDS = ("get", "access", "call", "auth")


# --- values -----------------------------------------------------------------

class Model:
    """A get handler's result: the model's properties."""

    def __init__(self, properties: dict) -> None:
        self.properties = properties


class Collection:
    """A get handler's result: the collection's values."""

    def __init__(self, values: list) -> None:
        self.values = values


class Ref:
    """A resource reference value: ``{"rid": rid}``."""

    def __init__(self, rid: str) -> None:
        self.rid = rid

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.rid == self.rid

    def __hash__(self) -> int:
        return hash((type(self), self.rid))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.rid!r})"

    def to_json(self) -> dict:
        return {"rid": self.rid}


class SoftRef(Ref):
    """A soft resource reference: ``{"rid": rid, "soft": true}``."""

    def to_json(self) -> dict:
        return {"rid": self.rid, "soft": True}


class Resource:
    """A call or auth result naming a resource: ``{"resource": {"rid": rid}}``."""

    def __init__(self, rid: str) -> None:
        self.rid = rid


class _Delete:
    def __repr__(self) -> str:
        return "DELETE"


#: A change event value that deletes the property.
DELETE = _Delete()


def _default(value: Any) -> Any:
    if isinstance(value, Ref):
        return value.to_json()
    if value is DELETE:
        return {"action": "delete"}
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def encode(value: Any) -> bytes:
    """JSON bytes of ``value``, with references and DELETE encoded the RES way."""
    return json.dumps(value, default=_default, separators=(",", ":")).encode()


# --- errors -----------------------------------------------------------------

class ResError(Exception):
    """An error answer: ``{"error": {"code", "message", "data"?}}``."""

    def __init__(self, code: str, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict:
        error = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def NotFound(message: str = "Not found") -> ResError:
    return ResError("system.notFound", message)


def InvalidParams(message: str = "Invalid parameters") -> ResError:
    return ResError("system.invalidParams", message)


def AccessDenied(message: str = "Access denied") -> ResError:
    return ResError("system.accessDenied", message)


# --- requests ---------------------------------------------------------------

class Request:
    """One request from the gateway.

    ``kind`` is get, access, call or auth; ``rid`` the resource name;
    ``method`` the call or auth method (None otherwise); ``path`` the values
    of the pattern's ``$name`` tokens. The payload's fields are attributes:
    ``params``, ``token``, ``cid``, ``query``, ``header``, ``host``,
    ``remote_addr``, ``uri`` (None where the request has none).
    """

    def __init__(self, kind: str, rid: str, method: str | None, path: dict[str, str],
                 payload: dict) -> None:
        self.kind = kind
        self.rid = rid
        self.method = method
        self.path = path
        self.payload = payload
        self.params = payload.get("params")
        self.token = payload.get("token")
        self.cid = payload.get("cid")
        self.query = payload.get("query")
        self.header = payload.get("header")
        self.host = payload.get("host")
        self.remote_addr = payload.get("remoteAddr")
        self.uri = payload.get("uri")

    def __repr__(self) -> str:
        method = f".{self.method}" if self.method else ""
        return f"<Request {self.kind} {self.rid}{method}>"


class _Pattern:
    """A resource pattern: literal tokens, ``$name`` placeholders, a last ``>``."""

    def __init__(self, pattern: str) -> None:
        tokens = pattern.split(".")
        if not pattern or any(not t for t in tokens):
            raise ValueError(f"invalid resource pattern {pattern!r}")
        if ">" in tokens[:-1]:
            raise ValueError(f"'>' must be the last token of {pattern!r}")
        self.pattern = pattern
        self.tokens = tokens
        self.subject = ".".join("*" if t.startswith("$") else t for t in tokens)

    def path(self, rid: str) -> dict[str, str]:
        parts = rid.split(".")
        return {t[1:]: parts[i] for i, t in enumerate(self.tokens) if t.startswith("$")}


# --- the service ------------------------------------------------------------

class Service:
    """Handlers for RES requests on one NATS connection, and its events.

    ``reset`` lists resource patterns (``library.>``) sent in a
    ``system.reset`` event once connected, so a gateway that cached them from
    an earlier run of the service fetches them again.
    """

    def __init__(self, reset: list[str] | None = None, log: Callable[[str], None] | None = None) -> None:
        self.reset_resources = list(reset or [])
        self._log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self._routes: list[tuple[str, str, _Pattern, str | None, Callable]] = []
        self._nc = None
        self._outbox: collections.deque[tuple[str, bytes]] = collections.deque()
        self._draining: asyncio.Future | None = None

    # Registration: each returns a decorator.

    def get(self, pattern: str) -> Callable:
        return self._route("get", pattern, None)

    def access(self, pattern: str) -> Callable:
        return self._route("access", pattern, None)

    def call(self, pattern: str, method: str) -> Callable:
        return self._route("call", pattern, method)

    def auth(self, pattern: str, method: str) -> Callable:
        return self._route("auth", pattern, method)

    def _route(self, kind: str, pattern: str, method: str | None) -> Callable:
        compiled = _Pattern(pattern)
        if compiled.tokens[-1] == ">" and kind != "access":
            raise ValueError(f"only access handlers take a '>' pattern, not {kind} {pattern!r}")
        if method is not None and (not method or "." in method or method in ("*", ">")):
            raise ValueError(f"invalid method name {method!r}")
        subject = f"{kind}.{compiled.subject}" + (f".{method}" if method else "")
        if self._nc is not None:
            raise RuntimeError("register handlers before connect()")

        def register(handler: Callable) -> Callable:
            self._routes.append((subject, kind, compiled, method, handler))
            return handler

        return register

    # Connection.

    def connect(self, url: str = "nats://127.0.0.1:4222", wait: float = 10.0):
        """Connect, subscribe and send the reset event; a Deferred of the service.

        The first connection is retried for ``wait`` seconds, so a service may
        start alongside its nats-server.
        """
        from twisted.internet import defer

        return defer.Deferred.fromFuture(asyncio.ensure_future(self._connect(url, wait)))

    async def _connect(self, url: str, wait: float) -> "Service":
        import nats

        deadline = time.monotonic() + wait
        while True:
            try:
                self._nc = await nats.connect(url, name="ressvc", connect_timeout=2,
                                              max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                                              error_cb=self._nats_error)
                break
            except Exception as e:
                if time.monotonic() >= deadline:
                    raise RuntimeError(f"cannot connect to NATS at {url}: {e}") from None
                await asyncio.sleep(0.25)
        for subject, kind, pattern, method, handler in self._routes:
            await self._nc.subscribe(subject, cb=self._make_callback(kind, pattern, method, handler))
        await self._round_trip()
        if self.reset_resources:
            self.reset(self.reset_resources)
        await self._drain_now()
        return self

    async def _round_trip(self, timeout: float = 5.0) -> None:
        """Wait until the server has handled everything this connection sent.

        nats-py's flush() writes its PING straight to the socket, ahead of
        commands still in its pending buffer, so its PONG does not prove
        that earlier subscriptions are registered. A message published to
        our own inbox goes through that buffer: once it is back, every
        earlier command has reached the server.
        """
        inbox = self._nc.new_inbox()
        back = asyncio.get_running_loop().create_future()

        async def returned(msg) -> None:
            if not back.done():
                back.set_result(None)

        sub = await self._nc.subscribe(inbox, cb=returned)
        try:
            await self._nc.publish(inbox, b"")
            await asyncio.wait_for(back, timeout)
        finally:
            await sub.unsubscribe()

    async def _nats_error(self, error: Exception) -> None:
        # Failed first attempts are retried quietly; later trouble is logged.
        if self._nc is not None:
            self._log(f"ressvc: NATS: {error}")

    def close(self):
        """Flush what is queued and close the connection; a Deferred."""
        from twisted.internet import defer

        async def close():
            if self._nc is not None and not self._nc.is_closed:
                await self._drain_now()
                await self._nc.close()

        return defer.Deferred.fromFuture(asyncio.ensure_future(close()))

    def flush(self):
        """A Deferred that fires once everything published so far reached NATS."""
        from twisted.internet import defer

        async def flush():
            await self._drain_now()
            await self._round_trip()

        return defer.Deferred.fromFuture(asyncio.ensure_future(flush()))

    # Requests.

    def _make_callback(self, kind: str, pattern: _Pattern, method: str | None, handler: Callable):
        async def on_message(msg) -> None:
            # Never awaits the handler: one slow handler must not hold up the
            # subscription's later messages.
            self._dispatch(kind, pattern, method, handler, msg)

        return on_message

    def _dispatch(self, kind, pattern, method, handler, msg) -> None:
        from twisted.internet import defer

        tokens = msg.subject.split(".")
        rid = ".".join(tokens[1:-1] if method else tokens[1:])
        try:
            payload = json.loads(msg.data) if msg.data else {}
            if not isinstance(payload, dict):
                raise ValueError("payload is not a JSON object")
        except ValueError as e:
            self._log(f"ressvc: bad request on {msg.subject}: {e}")
            self._reply(msg.reply, {"error": {"code": "system.internalError",
                                              "message": f"Internal error: bad request payload: {e}"}})
            return
        request = Request(kind, rid, method, pattern.path(rid), payload)

        def call_handler():
            result = handler(request)
            if asyncio.iscoroutine(result):
                return defer.ensureDeferred(result)
            return result

        d = defer.maybeDeferred(call_handler)
        d.addCallback(lambda result: self._answer(msg.reply, kind, request, result))
        d.addErrback(lambda failure: self._fail(msg.reply, request, failure))
        d.addErrback(lambda failure: self._log(f"ressvc: {request!r}: {failure.getTraceback()}"))

    def _answer(self, reply: str, kind: str, request: Request, result: Any) -> None:
        if kind == "get":
            if isinstance(result, Model):
                result = {"model": result.properties}
            elif isinstance(result, Collection):
                result = {"collection": result.values}
            else:
                raise TypeError(f"a get handler returns Model or Collection, not {type(result).__name__}")
        elif isinstance(result, Resource):
            self._reply(reply, {"resource": {"rid": result.rid}})
            return
        self._reply(reply, {"result": result})

    def _fail(self, reply: str, request: Request, failure) -> None:
        if failure.check(ResError):
            self._reply(reply, {"error": failure.value.to_json()})
            return
        self._log(f"ressvc: {request!r} failed: {failure.getTraceback()}")
        self._reply(reply, {"error": {"code": "system.internalError",
                                      "message": f"Internal error: {failure.getErrorMessage()}"}})

    def _reply(self, reply: str | None, answer: dict) -> None:
        if reply:
            self._publish(reply, encode(answer))

    # Events.

    def change(self, rid: str, values: dict) -> None:
        """A model change event; ``DELETE`` as a value deletes the property."""
        self._publish(f"event.{rid}.change", encode({"values": values}))

    def add(self, rid: str, value: Any, idx: int) -> None:
        """A collection add event."""
        self._publish(f"event.{rid}.add", encode({"value": value, "idx": idx}))

    def remove(self, rid: str, idx: int) -> None:
        """A collection remove event."""
        self._publish(f"event.{rid}.remove", encode({"idx": idx}))

    def set_token(self, cid: str, token: Any) -> None:
        """A connection token event: the gateway keeps ``token`` for connection ``cid``."""
        self._publish(f"conn.{cid}.token", encode({"token": token}))

    def reset(self, resources: list[str] | None = None, access: list[str] | None = None) -> None:
        """A system reset event for resource and access patterns."""
        event: dict[str, list[str]] = {}
        if resources:
            event["resources"] = resources
        if access:
            event["access"] = access
        self._publish("system.reset", encode(event))

    def _publish(self, subject: str, payload: bytes) -> None:
        if self._nc is None:
            raise RuntimeError("not connected")
        self._outbox.append((subject, payload))
        if self._draining is None or self._draining.done():
            self._draining = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        # One drainer at a time sends the outbox in order.
        while self._outbox:
            subject, payload = self._outbox.popleft()
            try:
                await self._nc.publish(subject, payload)
            except Exception as e:
                self._log(f"ressvc: publish to {subject} failed: {e}")

    async def _drain_now(self) -> None:
        while self._draining is not None and not self._draining.done():
            await self._draining


# --- the page ----------------------------------------------------------------

def static_site(page: Path, resgate_url: str | None = None, children: dict | None = None):
    """A twisted.web Site serving an example's page.

    ``/`` is ``page`` (index.html); ``/resclient.min.js`` is ResClient's
    bundle from examples/node_modules (installed by scripts/setup);
    ``/config.js`` sets ``window.RESGATE_URL`` to ``resgate_url`` when given
    (otherwise the page uses ``ws://<its own host>:8080``). ``children``
    adds resources by name (a login page, say).
    """
    from twisted.web import pages, resource, server

    class Page(resource.Resource):
        isLeaf = False

        def getChild(self, name: bytes, request):
            if name in (b"", b"index.html"):
                return self
            return pages.notFound()

        def render_GET(self, request) -> bytes:
            request.setHeader(b"content-type", b"text/html; charset=utf-8")
            request.setHeader(b"cache-control", b"no-store")
            return page.read_bytes()

    class Config(resource.Resource):
        isLeaf = True

        def render_GET(self, request) -> bytes:
            request.setHeader(b"content-type", b"text/javascript; charset=utf-8")
            request.setHeader(b"cache-control", b"no-store")
            if resgate_url is None:
                return b"// No --resgate given: the page connects to ws://<its host>:8080.\n"
            return f"window.RESGATE_URL = {json.dumps(resgate_url)};\n".encode()

    class Script(resource.Resource):
        isLeaf = True

        def render_GET(self, request) -> bytes:
            if not RESCLIENT_JS.is_file():
                request.setResponseCode(404)
                request.setHeader(b"content-type", b"text/plain; charset=utf-8")
                return (f"{RESCLIENT_JS} is missing: run scripts/setup "
                        "(it runs `npm ci` in examples/)\n").encode()
            request.setHeader(b"content-type", b"text/javascript; charset=utf-8")
            return RESCLIENT_JS.read_bytes()

    root = Page()
    root.putChild(b"config.js", Config())
    root.putChild(b"resclient.min.js", Script())
    for name, child in (children or {}).items():
        root.putChild(name.encode() if isinstance(name, str) else name, child)
    return server.Site(root)


# --- running an example ------------------------------------------------------

def arguments(description: str, port: int, argv: list[str] | None = None) -> argparse.Namespace:
    """The command line every example takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--nats", default="nats://127.0.0.1:4222", help="NATS server URL (default: %(default)s)")
    parser.add_argument("--addr", default="127.0.0.1", help="address the page is served on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=port,
                        help="port the page is served on, 0 for any (default: %(default)s)")
    parser.add_argument("--resgate", default=None, metavar="URL",
                        help="WebSocket URL of the gateway for the page (default: ws://<page host>:8080)")
    return parser.parse_args(argv)


def install_reactor() -> None:
    """Install Twisted's asyncio reactor unless a reactor is installed already."""
    if "twisted.internet.reactor" not in sys.modules:
        from twisted.internet import asyncioreactor

        asyncioreactor.install()


def run(service: Service, page: Path, port: int, description: str = "A RES service example",
        children: dict | None = None, argv: list[str] | None = None,
        started: Callable[[], None] | None = None) -> None:
    """Connect ``service``, serve ``page`` and run the reactor until stopped.

    ``started`` is called once connected (to start a ticker, say).
    """
    args = arguments(description, port, argv)
    install_reactor()
    from twisted.internet import defer, endpoints, reactor

    async def main() -> None:
        await service.connect(args.nats)
        endpoint = endpoints.TCP4ServerEndpoint(reactor, args.port, interface=args.addr)
        listening = await endpoint.listen(static_site(page, args.resgate, children))
        if started is not None:
            started()
        host = listening.getHost()
        print(f"Connected to NATS at {args.nats}", flush=True)
        print(f"Client available at http://{host.host}:{host.port}", flush=True)

    def failed(failure) -> None:
        print(f"error: {failure.getErrorMessage()}", file=sys.stderr, flush=True)
        reactor.stop()
        exit_code.append(1)

    exit_code: list[int] = []
    reactor.callWhenRunning(lambda: defer.ensureDeferred(main()).addErrback(failed))
    reactor.addSystemEventTrigger("before", "shutdown", service.close)
    reactor.run()
    sys.exit(exit_code[0] if exit_code else 0)
