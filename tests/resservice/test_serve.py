"""Serving: the reset on start, lifecycle hooks, graceful shutdown, queue groups, worker groups.

go-res's test/00 (serve, service events) and its worker and shutdown
behaviour; queue groups over the real nats-server.
"""

from __future__ import annotations

import asyncio

import pytest

from resservice import MemoryBus, Service
from resservice.testing import Session
from tests.rig.svc import on_asyncio


@pytest.mark.parametrize("resources, access, expected", [
    (None, None, {"resources": ["test.>"], "access": ["test.>"]}),
    (["test.foo.>"], [], {"resources": ["test.foo.>"]}),
    ([], ["test.bar.>"], {"access": ["test.bar.>"]}),
])
@on_asyncio
async def test_serving_sends_the_reset(open_session, resources, access, expected):
    service = Service("test", reset_resources=resources, reset_access=access)
    service.model("model")(lambda r: {})
    async with open_session(service) as session:
        await session.assert_event("system.reset", expected)
        await session.assert_no_event()


@on_asyncio
async def test_a_nameless_service_without_reset_patterns_sends_none(open_session):
    service = Service()
    service.model("a.model")(lambda r: {})
    async with open_session(service) as session:
        service.token_event("c", None)
        await session.assert_event("conn.c.token")


@on_asyncio
async def test_hooks_and_graceful_shutdown_answer_requests_under_way(open_session):
    service = Service("test")
    calls = []
    service.on_serve(lambda s: calls.append("serve"))
    service.on_shutdown(lambda s: calls.append("shutdown"))
    release = asyncio.Event()

    @service.call("model", "slow")
    async def slow(request):
        await release.wait()
        return "finished"

    session = open_session(service)
    await session.start()
    assert calls == ["serve"]
    pending = asyncio.ensure_future(session.call("test.model", "slow"))
    while not service._in_flight:
        await asyncio.sleep(0.01)
    stopping = asyncio.ensure_future(service.shutdown())
    await asyncio.sleep(0.05)
    release.set()
    (await pending).assert_result("finished")
    await stopping
    assert calls == ["serve", "shutdown"] and service.state == "stopped"
    await session.close()


@on_asyncio
async def test_shutdown_answers_a_request_that_outlives_its_wait(open_session):
    service = Service("test", handler_timeout=10)

    @service.call("model", "hang")
    async def hang(request):
        await asyncio.Event().wait()

    session = open_session(service)
    await session.start()
    pending = asyncio.ensure_future(session.call("test.model", "hang"))
    while not service._in_flight:
        await asyncio.sleep(0.01)
    await service.shutdown(timeout=0.1)
    (await pending).assert_error("system.internalError", "Internal error: service shutting down")
    await session.close()


@on_asyncio
async def test_a_service_serves_once():
    service = Service("test")
    service.model("model")(lambda r: {})
    async with Session(service):
        with pytest.raises(RuntimeError):
            await service.start(MemoryBus())
        with pytest.raises(RuntimeError):
            service.model("other")(lambda r: {})


@on_asyncio
async def test_serve_returns_after_shutdown():
    service = Service("test")
    service.model("model")(lambda r: {})
    service.on_serve(lambda s: asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(s.shutdown())))
    await service.serve(MemoryBus(), stop_signals=())
    assert service.state == "stopped"


@on_asyncio
async def test_requests_of_one_resource_in_order_of_different_ones_concurrently(open_session):
    service = Service("test")
    log = []
    gates = {"1": asyncio.Event(), "2": asyncio.Event()}

    @service.call("model.$id", "work")
    async def work(request):
        log.append(("start", request.rid, request.params))
        await gates[request.path_params["id"]].wait()
        log.append(("end", request.rid, request.params))
        return request.params

    @service.call("grouped.$id", "work", group="shared")
    async def grouped(request):
        log.append(("grouped", request.rid))
        return None

    async with open_session(service) as session:
        first = asyncio.ensure_future(session.call("test.model.1", "work", "a"))
        second = asyncio.ensure_future(session.call("test.model.1", "work", "b"))
        other = asyncio.ensure_future(session.call("test.model.2", "work", "c"))
        while len(log) < 2:
            await asyncio.sleep(0.01)
        # model.2 started while model.1's first request still runs; model.1's second waits.
        assert sorted(log) == [("start", "test.model.1", "a"), ("start", "test.model.2", "c")]
        gates["2"].set()
        (await other).assert_result("c")
        gates["1"].set()
        (await first).assert_result("a")
        (await second).assert_result("b")
        assert log.index(("end", "test.model.1", "a")) < log.index(("start", "test.model.1", "b"))
        for rid in ("test.grouped.1", "test.grouped.2"):
            (await session.call(rid, "work")).assert_result(None)


@on_asyncio
async def test_instances_in_a_queue_group_share_the_requests(nats_server):
    served = []

    def instance(number):
        service = Service("queue", queue_group="queue-service")
        service.call("model", "who")(lambda r: served.append(number) or number)
        return service

    first, second = instance(1), instance(2)
    await second.start(nats_server.url)
    async with Session(first, nats_url=nats_server.url) as session:
        answers = [(await session.call("queue.model", "who")).result for _ in range(20)]
    await second.shutdown()
    # Each request answered once, by one of the two; both took some.
    assert len(answers) == 20 and len(served) == 20 and set(answers) == {1, 2}


@on_asyncio
async def test_one_worker_handles_one_group_at_a_time():
    service = Service("test", worker_count=1)
    running, most = [0], [0]

    @service.call("model.$id", "work")
    async def work(request):
        running[0] += 1
        most[0] = max(most[0], running[0])
        await asyncio.sleep(0.01)
        running[0] -= 1
        return None

    async with Session(service) as session:
        answers = await asyncio.gather(*(session.call(f"test.model.{i}", "work") for i in range(5)))
    assert all(a.error is None for a in answers) and most == [1]


@on_asyncio
async def test_lost_nats_calls_the_hooks_and_resets_once_back(private_nats_server):
    service = Service("test")
    service.model("model")(lambda r: {})
    happened: list[str] = []
    service.on_disconnect(lambda s: happened.append("disconnect"))
    service.on_reconnect(lambda s: happened.append("reconnect"))
    await service.start(private_nats_server.url)
    sent = service.reset
    service.reset = lambda resources=None, access=None: (happened.append(f"reset {resources} {access}"),
                                                         sent(resources, access))
    try:
        private_nats_server.stop()
        while "disconnect" not in happened:
            await asyncio.sleep(0.05)
        private_nats_server.start()
        while "reconnect" not in happened:
            await asyncio.sleep(0.05)
        await service.flush()  # the reset went out on the new connection
    finally:
        await service.shutdown()
    assert happened == ["disconnect", "reset ['test.>'] ['test.>']", "reconnect"]


def test_the_testing_nats_server_serves_a_session():
    from resservice.testing import NatsServer

    with NatsServer() as server:
        assert server.url.startswith("nats://127.0.0.1:") and server.process.poll() is None
    assert server.process.poll() is not None
