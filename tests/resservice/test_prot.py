"""resservice.prot: one service asking another, over both buses."""

from __future__ import annotations

import asyncio

import pytest

from resservice import Access, Collection, Model, Ref, ResError, ResourceResult, Service, invalid_params
from resservice.prot import Client
from tests.rig.svc import on_asyncio


def other_service() -> Service:
    other = Service("other")
    other.access("model")(lambda r: Access(get=True, call="x") if r.token else False)
    other.model("model")(lambda r: {"ref": Ref("other.list"), "n": 1})
    other.collection("list")(lambda r: Collection([1, Ref("other.model")], query=r.query))

    @other.call("model", "slow")
    async def slow(request):
        request.timeout(2)
        await asyncio.sleep(0.3)
        return "slow"

    other.call("model", "point")(lambda r: ResourceResult("other.list"))
    other.call("model", "fail")(lambda r: (_ for _ in ()).throw(invalid_params("no")))
    other.auth("model", "who")(lambda r: {"cid": r.cid, "header": r.header})
    return other


@on_asyncio
async def test_a_service_gets_calls_and_asks_another(open_session):
    other = other_service()
    asking = Service("asking")

    @asking.call("proxy", "get")
    async def proxy(request):
        client = Client(asking.bus)
        model = await client.get("other.model")
        listed = await client.get("other.list?a=1")
        return {"model": model.properties, "list": listed.values, "query": listed.query}

    async with open_session(other) as session:
        await asking.start(session.bus if session.nats_url is None else session.nats_url)
        try:
            (await session.call("asking.proxy", "get")).assert_result({
                "model": {"ref": Ref("other.list"), "n": 1}, "list": [1, Ref("other.model")], "query": "a=1"})
            client = Client(asking.bus, timeout=0.2)
            assert await client.call("other.model", "slow") == "slow"  # the pre-response extends the wait
            assert await client.call("other.model", "point") == ResourceResult("other.list")
            assert await client.auth("other.model", "who", cid="c1", header={"A": ["b"]}) == {
                "cid": "c1", "header": {"A": ["b"]}}
            assert await client.access("other.model", token={"u": 1}) == Access(get=True, call="x")
            with pytest.raises(ResError) as denied:
                await client.access("other.model")
            assert denied.value.code == "system.accessDenied"
            with pytest.raises(ResError) as failed:
                await client.call("other.model", "fail")
            assert (failed.value.code, failed.value.message) == ("system.invalidParams", "no")
            assert isinstance(await client.get("other.model"), Model)
        finally:
            await asking.shutdown()


@on_asyncio
async def test_a_request_no_one_answers_times_out(open_session):
    service = Service("lonely")
    service.model("model")(lambda r: {})
    async with open_session(service):
        client = Client(service.bus, timeout=0.2)
        with pytest.raises(ResError) as timed_out:
            await client.request("get.nobody.anywhere")
        assert (timed_out.value.code, timed_out.value.message) == ("system.timeout", "Request timeout")
