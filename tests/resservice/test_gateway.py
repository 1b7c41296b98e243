"""A resservice service behind the gateway: WebSocket and HTTP clients, and the real ResClient.

The service runs in the test process on the shared nats-server, the
gateway in-process too; the clients are real ones over loopback.
"""

from __future__ import annotations

import asyncio

import pytest
import pytest_twisted

from resservice import Access, Ref, Service, invalid_params
from tests.rig.aio import as_deferred, within
from tests.rig.http import http_request
from tests.rig.resclient import spawn_node
from tests.rig.resources import connect_client

# The gateway must log no error while it talks to a resservice service.
pytestmark = pytest.mark.usefixtures("logged_errors")


def library() -> tuple[Service, dict]:
    state = {"model": {"name": "shelf", "count": 1, "first": Ref("e2e.book.1")},
             "books": [Ref("e2e.book.1")], "book": {"title": "Dune"}}
    service = Service("e2e")

    @service.access(">")
    def access(request):
        return Access(get=True, call="*") if (request.token or {}).get("user") or request.rid != "e2e.secret" \
            else False

    service.model("model")(lambda r: state["model"])
    service.collection("books")(lambda r: state["books"])
    service.model("book.$id")(lambda r: state["book"])
    service.model("secret")(lambda r: {"hidden": True})

    @service.call("model", "increment")
    async def increment(request):
        by = request.parse_params().get("by") if isinstance(request.params, dict) else None
        if not isinstance(by, int):
            raise invalid_params("by must be an integer")
        await asyncio.sleep(0)
        state["model"]["count"] += by
        request.change({"count": state["model"]["count"]})
        return {"count": state["model"]["count"]}

    @service.call("books", "push")
    def push(request):
        state["books"].append(request.params)
        request.add(request.params, len(state["books"]) - 1)
        return None

    @service.auth("auth", "login")
    def login(request):
        service.token_event(request.cid, {"user": "jane"})
        return None

    return service, state


async def serving(service: Service, url: str) -> None:
    await within(as_deferred(service.start(url)), 10)


@pytest_twisted.ensureDeferred
async def test_websocket_and_http_clients_of_a_resservice_service(gateway, nats_server):
    service, state = library()
    await serving(service, nats_server.url)
    client = await connect_client(gateway)
    try:
        response = await client.request("subscribe.e2e.model")
        assert response["result"]["models"]["e2e.model"] == {"name": "shelf", "count": 1,
                                                             "first": {"rid": "e2e.book.1"}}
        assert response["result"]["models"]["e2e.book.1"] == {"title": "Dune"}

        # The change the call made reaches the client before the call's result.
        response = await client.request("call.e2e.model.increment", {"by": 41})
        assert response["result"] == {"payload": {"count": 42}}
        assert await client.next_message() == {"event": "e2e.model.change", "data": {"values": {"count": 42}}}
        response = await client.request("call.e2e.model.increment", {"by": "x"})
        assert response["error"]["code"] == "system.invalidParams"

        response = await client.request("subscribe.e2e.secret")
        assert response["error"]["code"] == "system.accessDenied"
        response = await client.request("auth.e2e.auth.login")
        assert "error" not in response
        response = await client.request("subscribe.e2e.secret")
        assert response["result"]["models"]["e2e.secret"] == {"hidden": True}

        over_http = await http_request("GET", f"http://127.0.0.1:{gateway.port}/api/e2e/model")
        assert (over_http.status, over_http.json()["count"]) == (200, 42)
        posted = await http_request("POST", f"http://127.0.0.1:{gateway.port}/api/e2e/model/increment",
                                    body=b'{"by": 1}')
        assert (posted.status, posted.json()) == (200, {"count": 43})
    finally:
        await client.close()
        await within(as_deferred(service.shutdown()), 10)


@pytest_twisted.ensureDeferred
async def test_resclient_sees_a_resservice_services_data_events_and_results(gateway, nats_server):
    service, state = library()
    await serving(service, nats_server.url)
    node = spawn_node(gateway.ws_url, "e2e.model", "e2e.books")
    try:
        initial = (await node.expect("initial"))["initial"]
        assert initial == {"model": {"name": "shelf", "count": 1, "first": {"rid": "e2e.book.1",
                                                                            "model": {"title": "Dune"}}},
                           "collection": [{"rid": "e2e.book.1", "model": {"title": "Dune"}}]}
        await node.expect("ready")

        node.send({"cmd": "call", "rid": "e2e.books", "method": "push", "params": "plain"})
        lines = [await node.expect_one_of("call", "event") for _ in range(2)]
        assert any(line.get("event") == "add" and line["item"] == "plain" for line in lines), lines

        node.send({"cmd": "call", "rid": "e2e.model", "method": "increment", "params": {"by": 41}})
        lines = [await node.expect_one_of("call", "event") for _ in range(2)]
        call_line = next(line for line in lines if "call" in line)
        # By the time ResClient resolves the call, it has applied the change.
        assert call_line["call"] == {"count": 42} and call_line["model"]["count"] == 42

        final = await node.exit_cleanly()
        assert final["model"]["count"] == 42 and final["collection"][-1] == "plain"
    finally:
        await node.stop()
        await within(as_deferred(service.shutdown()), 10)
