"""Bad input from the bus and failing handlers: answered with the protocol's errors, logged once.

go-res's test/21 (errors), and what a service must survive: malformed and
oversized requests, unknown methods, handlers that raise or never return.
"""

from __future__ import annotations

import asyncio

import pytest

from resservice import Service
from tests.rig.svc import on_asyncio


def echo_service(**options) -> Service:
    service = Service("test", **options)
    service.model("model")(lambda r: {"ok": True})
    service.call("model", "echo")(lambda r: r.params)
    return service


@pytest.mark.parametrize("payload", [b"{nope", b"[1,2]", b'"text"', b"null", b"\xff\xfe", b"{" * 1000])
@on_asyncio
async def test_malformed_requests_get_an_internal_error_and_one_log_line(open_session, service_log, payload):
    async with open_session(echo_service()) as session:
        for subject in ("get.test.model", "call.test.model.echo"):
            response = await session.request(subject, payload)
            response.assert_error("system.internalError")
            assert "bad request" in response.error.message
        (await session.get("test.model")).assert_model({"ok": True})
    assert len(service_log.errors) == 2
    assert all("bad request" in line for line in service_log.errors)


@on_asyncio
async def test_an_oversized_request_is_refused_unread(open_session, service_log):
    async with open_session(echo_service(max_request_size=1000)) as session:
        (await session.call("test.model", "echo", "x" * 990)).assert_error("system.internalError")
        (await session.call("test.model", "echo", "x" * 900)).assert_result("x" * 900)
    assert len(service_log.errors) == 1 and "exceeds 1000" in service_log.errors[0]


@on_asyncio
async def test_a_response_larger_than_the_bus_carries_is_an_error(open_session, service_log):
    service = Service("test")
    service.model("big")(lambda r: {"x": "y" * (2 * 1024 * 1024)})
    async with open_session(service) as session:
        (await session.get("test.big")).assert_error("system.internalError", "Internal error: response too large")
    assert len(service_log.errors) == 1


@on_asyncio
async def test_a_result_that_is_no_json_is_an_internal_error(open_session, service_log):
    service = Service("test")
    service.call("model", "odd")(lambda r: {"x": object()})
    async with open_session(service) as session:
        (await session.call("test.model", "odd")).assert_error("system.internalError")
    assert len(service_log.errors) == 1


@pytest.mark.parametrize("exception", [KeyError("oops"), RuntimeError("boom"), ZeroDivisionError()])
@on_asyncio
async def test_a_raising_handler_is_an_internal_error_logged_once_and_the_service_carries_on(
        open_session, service_log, exception):
    service = echo_service()

    @service.call("model", "crash")
    def crash(request):
        raise exception

    @service.call("model", "crash_later")
    async def crash_later(request):
        await asyncio.sleep(0)
        raise exception

    async with open_session(service) as session:
        for method in ("crash", "crash_later"):
            response = await session.call("test.model", method)
            response.assert_error("system.internalError")
        (await session.call("test.model", "echo", 1)).assert_result(1)
    assert len(service_log.errors) == 2
    assert all(type(exception).__name__ in line for line in service_log.errors)
    assert all(r.exc_info for r in service_log.records if r.levelname == "ERROR")


@on_asyncio
async def test_a_handler_that_never_returns_is_answered_with_a_timeout(open_session, service_log):
    service = echo_service(handler_timeout=0.2)
    cancelled = []

    @service.call("model", "hang")
    async def hang(request):
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(request.rid)
            raise

    async with open_session(service) as session:
        (await session.call("test.model", "hang")).assert_error("system.timeout", "Request timeout")
        # The hung handler held its group; the next request of the resource is answered.
        (await session.call("test.model", "echo", 2)).assert_result(2)
    assert cancelled == ["test.model"]
    assert len(service_log.errors) == 1 and "timeout" in service_log.errors[0]


@on_asyncio
async def test_unknown_methods_and_resources(open_session, service_log):
    service = echo_service()
    service.auth("auth", "login")(lambda r: None)
    async with open_session(service) as session:
        (await session.call("test.model", "nope")).assert_error("system.methodNotFound")
        (await session.auth("test.auth", "nope")).assert_error("system.methodNotFound")
    assert service_log.errors == []


@on_asyncio
async def test_hostile_subjects_are_refused(service_log):
    from resservice import MemoryBus
    from resservice.testing import Session

    service = Service()
    service.access(">")(lambda r: True)
    async with Session(service, bus=MemoryBus()) as session:
        (await session.request("access.a..b", {})).assert_error("system.internalError")
        (await session.access("a.b")).assert_access(get=True, call="*")
    assert len(service_log.errors) == 1


@on_asyncio
async def test_the_error_hook_hears_of_every_logged_error(open_session, service_log):
    service = echo_service()
    heard = []
    service.on_error(lambda s, message: heard.append(message))
    service.call("model", "crash")(lambda r: 1 / 0)
    async with open_session(service) as session:
        (await session.call("test.model", "crash")).assert_error("system.internalError")
        (await session.request("get.test.model", b"nope")).assert_error("system.internalError")
        await service.flush()
    assert len(heard) == 2 and "ZeroDivisionError" in heard[0] and "bad request" in heard[1]
