"""The Service: handlers for RES requests on a bus, the events it publishes, its lifecycle.

Requests and events of one resource (or worker group) are handled one
after the other, different ones concurrently. Everything the service
publishes (events, pre-responses, replies) leaves in the order it was made,
so a client sees the events a call caused before the call's result.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import json
import logging
import signal
import sys
from typing import Any, Awaitable, Callable

from resservice import errors
from resservice.bus import Bus, Message
from resservice.mux import Handler, HandlerFunc, Mux, Router
from resservice.natsbus import NatsBus
from resservice.pattern import Pattern, expand_group, subject_covers, valid_rid
from resservice.request import ACCESS_GRANTED, Access, Request
from resservice.resource import Event, QueryRequest, Resource
from resservice.values import Collection, Model, Ref, ResourceResult, encode
from resservice.workers import DEFAULT_WORKER_COUNT, Workers

#: How long a handler may take, unless it calls ``request.timeout()``: the
#: gateway's default request timeout, after which no one waits for the answer.
DEFAULT_HANDLER_TIMEOUT = 3.0
#: How long ``shutdown()`` waits for requests under way before answering them with an error.
DEFAULT_SHUTDOWN_WAIT = 5.0
#: How long a query event's inbox takes query requests.
QUERY_EVENT_DURATION = 5.0
#: Where ``serve()`` connects when given no bus or URL.
DEFAULT_NATS_URL = "nats://127.0.0.1:4222"

Hook = Callable[..., Any]
_HOOKS = ("serve", "disconnect", "reconnect", "error", "shutdown")


class _HandlerTimeout(Exception):
    pass


def awaitable_of(result: Any) -> "asyncio.Future[Any] | None":
    """A Future of a handler's result when it is a coroutine, a Future or a Deferred; else None."""
    if "twisted.internet.defer" in sys.modules:
        from twisted.internet.defer import Deferred

        if isinstance(result, Deferred):
            return result.asFuture(asyncio.get_running_loop())
    if inspect.isawaitable(result):
        return asyncio.ensure_future(result)
    return None


class Service(Mux):
    """A RES service: register handlers (it is a ``Mux``), then ``serve()``.

    ``name`` prefixes every pattern (``Service("library")`` and
    ``@service.get("book.$id")`` serve ``library.book.42``). Once serving,
    it sends a ``system.reset`` for ``reset_resources`` and ``reset_access``
    (by default ``name.>``), so gateways drop what they cached from an
    earlier run. Instances sharing a ``queue_group`` share the requests.
    """

    def __init__(self, name: str = "", *, reset_resources: list[str] | None = None,
                 reset_access: list[str] | None = None, queue_group: str = "",
                 worker_count: int = DEFAULT_WORKER_COUNT,
                 handler_timeout: float = DEFAULT_HANDLER_TIMEOUT,
                 max_request_size: int | None = None,
                 logger: logging.Logger | None = None) -> None:
        super().__init__(name)
        self.name = name
        owned = [f"{name}.>"] if name else []
        self.reset_resources = list(reset_resources) if reset_resources is not None else owned
        self.reset_access = list(reset_access) if reset_access is not None else list(owned)
        self.queue_group = queue_group
        self.handler_timeout = handler_timeout
        self.max_request_size = max_request_size
        self.log = logger or logging.getLogger("resservice")
        self.state = "new"
        self.bus: Bus | None = None
        self._owns_bus = False
        self._router: Router | None = None
        self._subs: list[Any] = []
        self._workers = Workers(worker_count, self.log)
        self._outbox: collections.deque[Any] = collections.deque()
        self._drainer: asyncio.Future[None] | None = None
        self._listeners: list[tuple[Pattern, Callable[[Event], Any]]] = []
        self._hooks: dict[str, list[Hook]] = {kind: [] for kind in _HOOKS}
        self._in_flight: set[Request] = set()
        self._background: set[asyncio.Future[Any]] = set()
        #: The inboxes of recent query events, and the timers that end them.
        self._query_inboxes: dict[Any, asyncio.TimerHandle] = {}
        self._stopped: asyncio.Event | None = None

    # --- configuration

    def set_reset(self, resources: list[str] | None, access: list[str] | None) -> None:
        """The patterns of the ``system.reset`` sent once serving (and after a reconnect)."""
        self.reset_resources = list(resources or [])
        self.reset_access = list(access or [])

    def on_serve(self, hook: Hook) -> Hook:
        """Decorate ``hook(service)``, called once the service serves."""
        self._hooks["serve"].append(hook)
        return hook

    def on_disconnect(self, hook: Hook) -> Hook:
        """Decorate ``hook(service)``, called when the NATS connection is lost."""
        self._hooks["disconnect"].append(hook)
        return hook

    def on_reconnect(self, hook: Hook) -> Hook:
        """Decorate ``hook(service)``, called when NATS is back (after the reset is sent)."""
        self._hooks["reconnect"].append(hook)
        return hook

    def on_error(self, hook: Hook) -> Hook:
        """Decorate ``hook(service, message)``, called for every error the service logs."""
        self._hooks["error"].append(hook)
        return hook

    def on_shutdown(self, hook: Hook) -> Hook:
        """Decorate ``hook(service)``, called once the service has stopped."""
        self._hooks["shutdown"].append(hook)
        return hook

    def add_listener(self, pattern: str, listener: Callable[[Event], Any]) -> None:
        """Call ``listener(event)`` after each event of a resource matching ``pattern``."""
        self._listeners.append((Pattern(pattern), listener))

    # --- lifecycle

    async def start(self, bus: Bus | str | list[str] | None = None, **nats_options: Any) -> None:
        """Connect (or use ``bus``), subscribe, send the reset; return once serving.

        ``bus`` is a Bus (a ``MemoryBus``, a ``NatsBus``) or NATS URLs;
        ``nats_options`` go to ``nats.connect``.
        """
        if self.state != "new":
            raise RuntimeError(f"a service serves once; this one is {self.state}")
        self.state = "starting"
        self.freeze()
        self._router = Router(self)
        self._stopped = asyncio.Event()
        if bus is None or isinstance(bus, (str, list)):
            bus = await NatsBus.connect(
                bus or DEFAULT_NATS_URL, name=self.name or "resservice",
                on_disconnect=self._disconnected,
                on_reconnect=self._reconnected,
                on_error=self._nats_error, **nats_options)
            self._owns_bus = True
        self.bus = bus
        for subject in self.subjects():
            self._subs.append(await bus.subscribe(subject, self._on_request, queue=self.queue_group))
        # The subscriptions are in place before anyone hears of the reset.
        await bus.flush()
        self.state = "serving"
        self.reset(self.reset_resources, self.reset_access)
        await self.drained()
        await self._run_hooks("serve")

    async def serve(self, bus: Bus | str | list[str] | None = None, *,
                    stop_signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM),
                    **nats_options: Any) -> None:
        """Serve until ``shutdown()``: ``asyncio.run(service.serve("nats://..."))``.

        ``stop_signals`` shut the service down gracefully (none when not on
        the main thread, or when another framework owns the signals: pass ``()``).
        """
        await self.start(bus, **nats_options)
        loop = asyncio.get_running_loop()
        installed = []
        for signum in stop_signals:
            try:
                loop.add_signal_handler(signum, lambda: self._spawn(self.shutdown()))
                installed.append(signum)
            except (NotImplementedError, RuntimeError, ValueError):
                pass
        try:
            assert self._stopped is not None
            await self._stopped.wait()
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)

    async def shutdown(self, timeout: float = DEFAULT_SHUTDOWN_WAIT) -> None:
        """Stop taking requests, answer those under way (an error after ``timeout``), close."""
        if self.state in ("stopping", "stopped"):
            if self._stopped is not None:
                await self._stopped.wait()
            return
        if self.state != "serving":
            self.state = "stopped"
            return
        self.state = "stopping"
        for sub in self._subs:
            try:
                await sub.unsubscribe()
            except Exception as e:
                self.log.warning("resservice: unsubscribing failed: %s", e)
        try:
            await asyncio.wait_for(self._workers.idle(), timeout)
        except asyncio.TimeoutError:
            pass
        for request in list(self._in_flight):
            self._answer(request, {"error": errors.internal_error("service shutting down").to_json()})
        await self.drained()
        assert self.bus is not None and self._stopped is not None
        try:
            for sub in list(self._query_inboxes):
                await self._end_query_inbox(sub)
            await self.bus.flush()
            if self._owns_bus:
                await self.bus.close()
        except Exception as e:
            self.log.warning("resservice: closing the connection failed: %s", e)
        self.state = "stopped"
        self._stopped.set()
        await self._run_hooks("shutdown")

    def _nats_error(self, error: Exception) -> None:
        # While stopping, the closing connection's own errors are expected.
        if self.state == "serving":
            self._log_error(f"NATS: {error}")

    async def _disconnected(self) -> None:
        # Closing the connection at shutdown disconnects too: that is no loss.
        if self.state == "serving":
            await self._run_hooks("disconnect")

    async def _reconnected(self) -> None:
        # Events made while disconnected may be lost: gateways get everything again.
        self.reset(self.reset_resources, self.reset_access)
        await self._run_hooks("reconnect")

    async def _run_hooks(self, kind: str, *args: Any) -> None:
        for hook in self._hooks[kind]:
            try:
                result = awaitable_of(hook(self, *args))
                if result is not None:
                    await result
            except Exception:
                self.log.exception("resservice: the %s hook %r failed", kind, hook)

    def subjects(self) -> list[str]:
        """The subjects the service subscribes to: one per handled kind and pattern, none covered by another."""
        assert self._router is not None
        wanted: set[str] = set()
        for _, pattern, handler in self._router.entries:
            subject = pattern.subject
            if handler.access:
                wanted.add(f"access.{subject}")
            if handler.get:
                wanted.add(f"get.{subject}")
            if handler.call or handler.new:
                wanted.add(f"call.{subject}.*")
            if handler.auth:
                wanted.add(f"auth.{subject}.*")
        # Overlapping subscriptions would deliver a request twice, and answer it twice.
        return sorted(s for s in wanted if not any(o != s and subject_covers(o, s) for o in wanted))

    # --- events and resources

    def resource(self, rid: str) -> Resource:
        """The resource ``rid``, to publish its events from outside a handler."""
        if not valid_rid(rid):
            raise ValueError(f"invalid resource name {rid!r}")
        found = self._router.lookup(rid) if self._router is not None else None
        if found is None:
            return Resource(self, rid, None, {})
        _, handler, params = found
        return Resource(self, rid, handler, params, group=self._group(handler, rid, params))

    async def with_resource(self, rid: str, work: Callable[[Resource], Any]) -> Any:
        """Run ``work(resource)`` in the resource's worker group, after its queued requests."""
        if self._router is None or self._router.lookup(rid) is None:
            raise ValueError(f"no handler matches {rid!r}")
        resource = self.resource(rid)
        return await self.with_group(resource.group, lambda: work(resource))

    async def with_group(self, group: str, work: Callable[[], Any]) -> Any:
        """Run ``work()`` in worker group ``group``; its result (or exception) is returned."""
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        async def job() -> None:
            try:
                result = work()
                pending = awaitable_of(result)
                done.set_result(await pending if pending is not None else result)
            except Exception as e:
                done.set_exception(e)

        self._workers.submit(group, job)
        return await done

    def reset(self, resources: list[str] | None = None, access: list[str] | None = None) -> None:
        """A ``system.reset`` event: gateways get matching resources, or ask access, again."""
        payload: dict[str, list[str]] = {}
        if resources:
            payload["resources"] = list(resources)
        if access:
            payload["access"] = list(access)
        if payload:
            self._publish("system.reset", payload)

    def token_event(self, cid: str, token: Any, tid: str | None = None) -> None:
        """A connection token event: the gateway keeps ``token`` for connection ``cid``.

        ``tid`` names the token so that ``token_reset`` can later ask for it again.
        """
        if not isinstance(cid, str) or not valid_rid(cid) or "." in cid:
            raise ValueError(f"invalid connection ID {cid!r}")
        payload: dict[str, Any] = {"token": token}
        if tid is not None:
            payload["tid"] = tid
        self._publish(f"conn.{cid}.token", payload)

    def token_reset(self, subject: str, tids: list[str]) -> None:
        """A ``system.tokenReset``: gateways send an auth request to ``subject`` for each connection
        whose token has one of ``tids``."""
        if not tids:
            return
        self._publish("system.tokenReset", {"tids": list(tids), "subject": subject})

    def _publish(self, subject: str, payload: Any) -> None:
        data = b"" if payload is None else encode(payload)
        self._send(subject, data)

    def _send(self, subject: str, data: bytes) -> None:
        if self.state not in ("serving", "stopping"):
            raise RuntimeError("the service publishes once serving")
        assert self.bus is not None
        if len(data) > self.bus.max_payload:
            raise ValueError(f"{subject}: payload of {len(data)} bytes exceeds the bus's {self.bus.max_payload}")
        self._enqueue((subject, data))

    def _enqueue(self, item: Any) -> None:
        self._outbox.append(item)
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        # One drainer at a time sends the outbox in order.
        assert self.bus is not None
        while self._outbox:
            item = self._outbox.popleft()
            try:
                if callable(item):
                    await item()
                else:
                    await self.bus.publish(*item)
            except Exception as e:
                self._log_error(f"publishing failed: {e}")

    async def drained(self) -> None:
        """Wait until everything published so far has been handed to the bus."""
        while self._drainer is not None and not self._drainer.done():
            await asyncio.shield(self._drainer)

    async def flush(self) -> None:
        """Wait until everything published so far has reached the bus."""
        await self.drained()
        if self.bus is not None:
            await self.bus.flush()

    def _notify(self, event: Event) -> None:
        for pattern, listener in self._listeners:
            if pattern.match(event.rid) is not None:
                try:
                    listener(event)
                except Exception:
                    self._log_error(f"listener {listener!r} failed on {event.name} of {event.rid}", exc_info=True)

    # --- requests

    def _on_request(self, message: Message) -> None:
        try:
            self._dispatch(message)
        except Exception:
            self._log_error(f"request on {message.subject} failed", exc_info=True)
            self._reply(message.reply, {"error": errors.internal_error().to_json()})

    def _dispatch(self, message: Message) -> None:
        kind, _, rid = message.subject.partition(".")
        method = None
        if kind in ("call", "auth"):
            rid, _, method = rid.rpartition(".")
        limit = self.max_request_size if self.max_request_size is not None else self.bus.max_payload
        if len(message.data) > limit:
            self._bad_request(message, f"payload of {len(message.data)} bytes exceeds {limit}")
            return
        try:
            payload = json.loads(message.data) if message.data else {}
        except (ValueError, UnicodeDecodeError) as e:
            self._bad_request(message, f"payload is not JSON ({e})")
            return
        if not isinstance(payload, dict):
            self._bad_request(message, "payload is not a JSON object")
            return
        if not valid_rid(rid) or kind not in ("access", "get", "call", "auth"):
            self._bad_request(message, "invalid subject")
            return
        assert self._router is not None
        wanted = {
            "access": lambda h: h.access,
            "get": lambda h: h.get,
            "call": lambda h: h.call or h.new,
            "auth": lambda h: h.auth,
        }[kind]
        found = self._router.lookup_for(rid, wanted)
        if found is None:
            self._reply(message.reply, {"error": errors.not_found().to_json()})
            return
        _, handler, params = found
        func: HandlerFunc | None
        if kind == "access":
            func = handler.access
        elif kind == "get":
            func = handler.get
        elif kind == "call":
            func = handler.call.get(method) or (handler.new if method == "new" else None)
        else:
            func = handler.auth.get(method)
        if func is None:
            self._reply(message.reply, {"error": errors.method_not_found().to_json()})
            return
        group = self._group(handler, rid, params)
        request = Request(self, kind, rid, method, handler, params, payload, group, message.reply)
        self._in_flight.add(request)
        if handler.parallel:
            self._spawn(self._handle(request, func))
        else:
            self._workers.submit(group, lambda: self._handle(request, func))

    @staticmethod
    def _group(handler: Handler, rid: str, params: dict[str, str]) -> str:
        return expand_group(handler.group, params) if handler.group else rid

    def _bad_request(self, message: Message, reason: str) -> None:
        # The payload's size, not its text: a request may carry a token or a password.
        self._log_error(f"bad request on {message.subject}: {reason} ({len(message.data)} bytes)")
        self._reply(message.reply, {"error": errors.internal_error(f"bad request: {reason}").to_json()})

    async def _handle(self, request: Request, func: HandlerFunc) -> None:
        try:
            result = func(request)
            pending = awaitable_of(result)
            if pending is not None:
                result = await self._bounded(request, pending)
            response = self._response(request, func, result)
        except errors.ResError as e:
            response = {"error": e.to_json()}
        except _HandlerTimeout:
            self._log_error(f"{request!r}: the handler did not return within its timeout")
            response = {"error": errors.timeout().to_json()}
        except Exception as e:
            self._log_error(f"{request!r}: the handler raised {type(e).__name__}: {e}", exc_info=True)
            response = {"error": errors.internal_error(e).to_json()}
        self._answer(request, response)

    async def _bounded(self, request: Request, pending: "asyncio.Future[Any]") -> Any:
        loop = asyncio.get_running_loop()
        if request.deadline is None:
            request.deadline = loop.time() + self.handler_timeout
        while True:
            remaining = request.deadline - loop.time()
            done, _ = await asyncio.wait({pending}, timeout=max(remaining, 0))
            if done:
                return pending.result()
            if loop.time() >= request.deadline:
                pending.cancel()
                raise _HandlerTimeout()

    def _pre_response(self, request: Request, seconds: float) -> None:
        request.deadline = asyncio.get_running_loop().time() + seconds
        if request.reply and not request.answered:
            self._send(request.reply, f'timeout:"{int(seconds * 1000)}"'.encode())

    def _response(self, request: Request, func: HandlerFunc, result: Any) -> dict[str, Any]:
        kind = request.kind
        if kind == "access":
            return {"result": _access_result(result)}
        if kind == "get":
            return {"result": _get_result(request, result)}
        if request.method == "new" and func is request.handler.new and func not in request.handler.call.values():
            rid = result.rid if isinstance(result, Ref) else result
            if not isinstance(rid, str) or not valid_rid(rid):
                raise TypeError(f"a new handler returns the Ref of the new resource, not {result!r}")
            return {"result": {"rid": rid}}
        if isinstance(result, ResourceResult):
            if not valid_rid(result.rid.partition("?")[0]):
                raise ValueError(f"invalid resource ID {result.rid!r}")
            return {"resource": {"rid": result.rid}}
        return {"result": result}

    def _answer(self, request: Request, response: dict[str, Any]) -> None:
        self._in_flight.discard(request)
        if request.answered:
            return
        request.answered = True
        meta = request.meta()
        if meta is not None:
            response["meta"] = meta
        self._reply(request.reply, response, request)

    def _reply(self, reply: str | None, response: dict[str, Any], request: Request | None = None) -> None:
        if not reply or self.bus is None:
            return
        try:
            data = encode(response)
        except (TypeError, ValueError) as e:
            self._log_error(f"{request!r}: the result cannot be sent: {e}")
            data = encode({"error": errors.internal_error(f"invalid result: {e}").to_json()})
        if len(data) > self.bus.max_payload:
            self._log_error(f"{request!r}: a response of {len(data)} bytes exceeds the bus's {self.bus.max_payload}")
            data = encode({"error": errors.internal_error("response too large").to_json()})
        self._enqueue((reply, data))

    # --- values and query events

    async def _get_value(self, resource: Resource) -> Model | Collection:
        assert self._router is not None
        found = self._router.lookup_for(resource.rid, lambda h: h.get)
        if found is None:
            raise errors.not_found()
        _, handler, params = found
        payload = {"query": resource.query} if resource.query is not None else {}
        request = Request(self, "get", resource.rid, None, handler, params, payload, resource.group, None)
        assert handler.get is not None
        result = handler.get(request)
        pending = awaitable_of(result)
        if pending is not None:
            result = await pending
        value = _get_result(request, result)
        if "model" in value:
            return Model(value["model"], value.get("query"))
        return Collection(value["collection"], value.get("query"))

    def _query_event(self, resource: Resource, callback: Callable[..., Any]) -> None:
        assert self.bus is not None
        bus = self.bus

        async def subscribe_and_publish() -> None:
            inbox = bus.new_inbox()
            sub = await bus.subscribe(inbox, lambda message: self._on_query_request(resource, callback, message))
            await bus.publish(f"event.{resource.rid}.query", encode({"subject": inbox}))
            self._query_inboxes[sub] = asyncio.get_running_loop().call_later(
                QUERY_EVENT_DURATION, lambda: self._spawn(self._end_query_inbox(sub)))

        if self.state not in ("serving", "stopping"):
            raise RuntimeError("the service publishes once serving")
        self._enqueue(subscribe_and_publish)

    async def _end_query_inbox(self, sub: Any) -> None:
        timer = self._query_inboxes.pop(sub, None)
        if timer is not None:
            timer.cancel()
            await sub.unsubscribe()

    def _on_query_request(self, resource: Resource, callback: Callable[..., Any], message: Message) -> None:
        try:
            payload = json.loads(message.data) if message.data else None
        except (ValueError, UnicodeDecodeError):
            payload = None
        query = payload.get("query") if isinstance(payload, dict) else None
        if not isinstance(query, str):
            self._bad_request(message, "a query request has a query string")
            return
        request = QueryRequest(self, resource.rid, resource.handler, resource.path_params, query, resource.group)

        async def job() -> None:
            try:
                result = callback(request)
                pending = awaitable_of(result)
                if pending is not None:
                    result = await asyncio.wait_for(pending, self.handler_timeout)
                if isinstance(result, Model):
                    response: dict[str, Any] = {"result": {"model": result.properties}}
                elif isinstance(result, Collection):
                    response = {"result": {"collection": result.values}}
                else:
                    response = {"result": {"events": request.events}}
            except errors.ResError as e:
                response = {"error": e.to_json()}
            except Exception as e:
                self._log_error(f"query request for {resource.rid}?{query} failed: {e}", exc_info=True)
                response = {"error": errors.internal_error(e).to_json()}
            self._reply(message.reply, response)

        self._workers.submit(resource.group, job)

    # --- helpers

    def _spawn(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: "asyncio.Future[Any]") -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Background work (an unsubscribe after the connection closed, say) has no one to tell.
            self.log.warning("resservice: background work failed: %s", task.exception())

    def _log_error(self, message: str, exc_info: bool = False) -> None:
        self.log.error("resservice: %s", message, exc_info=exc_info)
        if self._hooks["error"]:
            self._spawn(self._run_hooks("error", message))


def _access_result(result: Any) -> dict[str, Any]:
    if result is True:
        return ACCESS_GRANTED.to_json()
    if result is False or result is None:
        raise errors.access_denied()
    if isinstance(result, Access):
        access = result
    elif isinstance(result, dict) and set(result) <= {"get", "call"}:
        access = Access(bool(result.get("get")), result.get("call"))
    else:
        raise TypeError(f"an access handler returns Access, a dict or a bool, not {result!r}")
    if access.call is not None and not isinstance(access.call, str):
        raise TypeError(f"access call is a comma-separated string, not {access.call!r}")
    if not access.get and not access.call:
        raise errors.access_denied()
    return access.to_json()


def _get_result(request: Request, result: Any) -> dict[str, Any]:
    kind = request.handler.kind if request.handler else None
    if isinstance(result, dict) and kind != "collection":
        result = Model(result)
    elif isinstance(result, list) and kind != "model":
        result = Collection(result)
    if isinstance(result, Model) and kind != "collection":
        value: dict[str, Any] = {"model": result.properties}
    elif isinstance(result, Collection) and kind != "model":
        value = {"collection": result.values}
    else:
        wanted = {"model": "a dict or Model", "collection": "a list or Collection"}.get(
            kind or "", "a Model or Collection (or a dict or list)")
        raise TypeError(f"a get handler returns {wanted}, not {type(result).__name__}")
    if result.query is not None:
        value["query"] = result.query
    return value

