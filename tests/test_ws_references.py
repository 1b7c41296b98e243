"""What a client holds through references, step by step.

A RES client (ResClient) holds a resource while it is subscribed to it
directly (it got the response) or a resource it holds references it
(non-soft), as the copy the client has references it. It drops anything
else, and a resource it dropped comes again in full when it is referenced
again. The gateway must believe the same: events only for what the client
holds, resource data exactly for what it does not.

These scenarios are the concurrency scenario's (test_ws_concurrency.py,
graph "changing") failures, shrunk to the few steps that make each one.
The service holds back one request (an access check, a get) to open the
window in which the client's view and the gateway's could part.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import pytest_twisted

from tests.rig.buses import OVER_BOTH_BUSES
from tests.rig.ws import connect_ws

pytestmark = [pytest.mark.usefixtures("logged_errors"), OVER_BOTH_BUSES]

SYNC = "auth.ref.sync"


def ref(rid: str) -> dict:
    return {"rid": rid}


def serve(fake_service, state: dict[str, Any], *, hold: tuple[str, ...] = ()) -> None:
    """Answer access (get granted) and get requests from ``state``, except the subjects in ``hold``.

    A held request waits for the test (``fake_service.take``).
    """
    def get(request) -> None:
        data = copy.deepcopy(state[request.subject[len("get."):]])
        request.respond_result({"collection": data} if isinstance(data, list) else {"model": data})

    for rid in state:
        if f"access.{rid}" not in hold:
            fake_service.on(f"access.{rid}", lambda r: r.respond_result({"get": True}))
        if f"get.{rid}" not in hold:
            fake_service.on(f"get.{rid}", get)
    fake_service.on(SYNC, lambda r: r.respond_result(None))


async def client_for(gateway):
    client = await connect_ws(gateway.ws_url)
    await client.request("version", {"protocol": "1.2.3"})
    return client


async def sync(client) -> list:
    """A round trip through the service: every event it published before has been handled.

    Returns the events the client received since the last sync.
    """
    start = getattr(client, "_synced", 0)
    await client.request(SYNC)
    client._synced = len(client.messages)
    return [m for m in client.messages[start:] if "event" in m]


def change(fake_service, state, rid: str, values: dict) -> None:
    """Change the service's truth and publish the event, in one step."""
    for key, value in values.items():
        if value == {"action": "delete"}:
            del state[rid][key]
        else:
            state[rid][key] = value
    fake_service.event(rid, "change", {"values": values})


@pytest_twisted.ensureDeferred
async def test_resource_dropped_while_its_subscribe_waits_for_access_is_sent_in_full(gateway, fake_service):
    """A subscribe the client has no response to yet makes it hold nothing.

    The client holds ref.b through ref.a and subscribes to it; while access
    is checked, ref.a drops ref.b, so the client drops ref.b. The subscribe
    response must carry ref.b, and no event for ref.b may come before it.
    (The gateway counted the pending subscribe as held: ref.b stayed "sent",
    the response was ``{}`` and ref.b's events reached a client without it.)
    """
    state = {"ref.a": {"b": ref("ref.b")}, "ref.b": {"n": 1}}
    serve(fake_service, state, hold=("access.ref.b",))
    client = await client_for(gateway)
    assert (await client.request("subscribe.ref.a"))["result"] == {"models": copy.deepcopy(state)}

    pending = client.request("subscribe.ref.b")
    access = (await fake_service.take("access.ref.b"))["access.ref.b"]
    change(fake_service, state, "ref.a", {"b": None})
    change(fake_service, state, "ref.b", {"n": 2})
    assert await sync(client) == [{"event": "ref.a.change", "data": {"values": {"b": None}}}]

    access.respond_result({"get": True})
    assert (await pending)["result"] == {"models": {"ref.b": {"n": 2}}}
    change(fake_service, state, "ref.b", {"n": 3})
    assert await sync(client) == [{"event": "ref.b.change", "data": {"values": {"n": 3}}}]


@pytest_twisted.ensureDeferred
async def test_events_queued_during_a_subscribe_see_the_subscription_held(gateway, fake_service):
    """ref.a <-> ref.b; ref.a drops ref.b while ref.b loads for the subscribe.

    The queued change goes out after the response. Releasing ref.b then
    must not take ref.a with it (a cycle back to a subscription whose
    response has just gone): the client holds ref.a directly. (A guard for
    the fix of the first scenario: a subscription counts as the client's
    once its response is out, before the events queued behind it go.)
    """
    state = {"ref.a": {"b": ref("ref.b")}, "ref.b": {"a": ref("ref.a")}}
    serve(fake_service, state, hold=("get.ref.b",))
    client = await client_for(gateway)
    pending = client.request("subscribe.ref.a")
    get_b = (await fake_service.take("get.ref.b"))["get.ref.b"]
    loaded = copy.deepcopy(state)
    change(fake_service, state, "ref.a", {"b": None})
    await sync(client)
    get_b.respond_result({"model": loaded["ref.b"]})

    assert (await pending)["result"] == {"models": loaded}
    change(fake_service, state, "ref.a", {"n": 1})
    assert await sync(client) == [
        {"event": "ref.a.change", "data": {"values": {"b": None}}},
        {"event": "ref.a.change", "data": {"values": {"n": 1}}},
    ]
    # ref.b was dropped: it comes again in full.
    assert (await client.request("subscribe.ref.b"))["result"] == {"models": {"ref.b": state["ref.b"]}}


@pytest_twisted.ensureDeferred
async def test_reference_replaced_by_a_change_still_loading_stays_held_until_the_change(gateway, fake_service):
    """ref.p's change replaces ref.old with ref.new, whose get is held back.

    Until the change reaches the client, the client's ref.p references
    ref.old: it holds ref.old, gets its events, and subscribing to it sends
    nothing new. (The gateway released ref.old at once: its events were
    lost and the subscribe sent it again while the client held it.)
    """
    state = {"ref.p": {"x": ref("ref.old")}, "ref.old": {"n": 1}, "ref.new": {"n": 1}}
    serve(fake_service, state, hold=("get.ref.new",))
    client = await client_for(gateway)
    assert (await client.request("subscribe.ref.p"))["result"] == {
        "models": {"ref.p": {"x": ref("ref.old")}, "ref.old": {"n": 1}}}

    change(fake_service, state, "ref.p", {"x": ref("ref.new")})
    get_new = (await fake_service.take("get.ref.new"))["get.ref.new"]
    change(fake_service, state, "ref.old", {"n": 2})
    assert await sync(client) == [{"event": "ref.old.change", "data": {"values": {"n": 2}}}]
    assert (await client.request("subscribe.ref.old"))["result"] == {}

    get_new.respond_result({"model": state["ref.new"]})
    change(fake_service, state, "ref.old", {"n": 3})
    assert await sync(client) == [
        {"event": "ref.p.change", "data": {"values": {"x": ref("ref.new")}, "models": {"ref.new": {"n": 1}}}},
        {"event": "ref.old.change", "data": {"values": {"n": 3}}},
    ]


@pytest_twisted.ensureDeferred
async def test_new_reference_of_a_waiting_change_is_not_held_yet(gateway, fake_service):
    """ref.p's change references ref.z, which the client holds through ref.q, and ref.y, loading.

    The client drops ref.q, and ref.z with it: its ref.p does not reference
    ref.z until the change arrives, so the change must carry ref.z too.
    (The gateway counted ref.p's new reference as the client's at once.)
    """
    state = {
        "ref.p": {"a": None, "b": None},
        "ref.q": {"z": ref("ref.z")},
        "ref.z": {"n": 1},
        "ref.y": {"n": 1},
    }
    serve(fake_service, state, hold=("get.ref.y",))
    client = await client_for(gateway)
    assert (await client.request("subscribe.ref.p"))["result"] == {"models": {"ref.p": state["ref.p"]}}
    assert (await client.request("subscribe.ref.q"))["result"] == {
        "models": {"ref.q": state["ref.q"], "ref.z": state["ref.z"]}}

    change(fake_service, state, "ref.p", {"a": ref("ref.z"), "b": ref("ref.y")})
    get_y = (await fake_service.take("get.ref.y"))["get.ref.y"]
    await client.request("unsubscribe.ref.q")
    get_y.respond_result({"model": state["ref.y"]})
    assert await sync(client) == [{"event": "ref.p.change", "data": {
        "values": {"a": ref("ref.z"), "b": ref("ref.y")},
        "models": {"ref.z": {"n": 1}, "ref.y": {"n": 1}},
    }}]


@pytest.mark.parametrize("kind", ["model", "collection"])
@pytest_twisted.ensureDeferred
async def test_resource_with_a_waiting_event_is_sent_again_as_the_client_will_see_it(gateway, fake_service, kind):
    """ref.x's event adds a reference to ref.y, whose get is held back; then the client drops ref.x.

    ref.p, which references ref.x, is subscribed meanwhile (access held
    back). Its response must wait for ref.y and carry ref.x with ref.y and
    ref.y itself, and no event for ref.x may follow: the client's copy has
    it. (The gateway sent ref.x as the event left it, referencing ref.y
    without ref.y's data, then the event: a collection got the item twice.)
    """
    state: dict[str, Any] = {"ref.y": {"n": 1}, "ref.p": {"x": ref("ref.x")}}
    state["ref.x"] = {"y": None} if kind == "model" else ["first"]
    serve(fake_service, state, hold=("get.ref.y", "access.ref.p"))
    client = await client_for(gateway)
    group = "models" if kind == "model" else "collections"
    assert (await client.request("subscribe.ref.x"))["result"] == {group: {"ref.x": copy.deepcopy(state["ref.x"])}}

    if kind == "model":
        change(fake_service, state, "ref.x", {"y": ref("ref.y")})
    else:
        state["ref.x"].insert(0, ref("ref.y"))
        fake_service.event("ref.x", "add", {"idx": 0, "value": ref("ref.y")})
    get_y = (await fake_service.take("get.ref.y"))["get.ref.y"]
    pending = client.request("subscribe.ref.p")
    access_p = (await fake_service.take("access.ref.p"))["access.ref.p"]
    await sync(client)  # ref.p has loaded
    await client.request("unsubscribe.ref.x")
    access_p.respond_result({"get": True})
    await sync(client)
    get_y.respond_result({"model": state["ref.y"]})

    result = (await pending)["result"]
    expected = {"models": {"ref.p": state["ref.p"], "ref.y": state["ref.y"]}}
    expected[group] = {**expected.get(group, {}), "ref.x": state["ref.x"]}
    assert result == expected
    assert await sync(client) == []


@pytest_twisted.ensureDeferred
async def test_reference_dropped_while_a_response_waits_for_it_does_not_hold_the_response(gateway, fake_service):
    """A resource the client does not hold takes events at once, loading new references.

    The client holds ref.r through ref.a, subscribes to ref.r and, while
    access is checked, drops it (ref.a drops ref.r). ref.r then references
    ref.y, whose get is held back: the subscribe response waits for ref.y.
    ref.r drops ref.y again: the response goes without it.
    """
    state = {"ref.a": {"r": ref("ref.r")}, "ref.r": {"y": None}, "ref.y": {"n": 1}}
    serve(fake_service, state, hold=("access.ref.r", "get.ref.y"))
    client = await client_for(gateway)
    assert (await client.request("subscribe.ref.a"))["result"] == {
        "models": {"ref.a": state["ref.a"], "ref.r": state["ref.r"]}}

    pending = client.request("subscribe.ref.r")
    access_r = (await fake_service.take("access.ref.r"))["access.ref.r"]
    change(fake_service, state, "ref.a", {"r": None})
    change(fake_service, state, "ref.r", {"y": ref("ref.y")})
    get_y = (await fake_service.take("get.ref.y"))["get.ref.y"]
    access_r.respond_result({"get": True})
    assert await sync(client) == [{"event": "ref.a.change", "data": {"values": {"r": None}}}]
    assert not pending.called

    change(fake_service, state, "ref.r", {"y": None})
    assert (await pending)["result"] == {"models": {"ref.r": {"y": None}}}
    get_y.respond_result({"model": state["ref.y"]})
    change(fake_service, state, "ref.r", {"n": 1})
    assert await sync(client) == [{"event": "ref.r.change", "data": {"values": {"n": 1}}}]


#: Deeper than Python's recursion limit (1,000 frames): a walk per reference level would fail.
CHAIN_LENGTH = 1200


@pytest_twisted.ensureDeferred
async def test_a_chain_of_references_deeper_than_the_recursion_limit_is_sent_and_released(gateway, fake_service):
    state: dict[str, Any] = {f"ref.chain.{i}": {"next": ref(f"ref.chain.{i + 1}")} for i in range(CHAIN_LENGTH - 1)}
    state[f"ref.chain.{CHAIN_LENGTH - 1}"] = {"end": True}
    serve(fake_service, state)
    client = await client_for(gateway)
    response = await client.request("subscribe.ref.chain.0")
    assert response["result"] == {"models": state}

    # Released through the whole chain: the last link takes no events any more.
    assert "error" not in await client.request("unsubscribe.ref.chain.0")
    change(fake_service, state, f"ref.chain.{CHAIN_LENGTH - 1}", {"end": False})
    assert await sync(client) == []
    await client.close()


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("references, sends", [(300, [1, 129, 257]), (128, [])], ids=["300", "128"])
async def test_what_is_queued_goes_out_while_a_long_reference_list_is_subscribed(gateway, fake_service,
                                                                                  monkeypatch, references, sends):
    """Thousands of references take milliseconds to subscribe; the requests queued by then are sent on the way.

    Before the first reference and after each 128 (subscriptions the
    connection holds at each send: the list, then 128 more each time), cold
    and warm alike; a list of 128 or fewer waits for the turn's end as
    everything else does.
    """
    from resgate.connection import Connection

    items = {f"ref.item.{i}": {"n": i} for i in range(references)}
    state = {"ref.list": [ref(rid) for rid in items], **items}
    serve(fake_service, state)
    seen: list[int] = []
    send = Connection.send_requests_now

    def recorded(self) -> None:
        seen.append(len(self.subs))
        send(self)

    monkeypatch.setattr(Connection, "send_requests_now", recorded)
    for _ in ("cold", "warm"):
        client = await client_for(gateway)
        result = (await client.request("subscribe.ref.list"))["result"]
        assert result == {"collections": {"ref.list": state["ref.list"]}, "models": items}
        assert seen == sends
        seen.clear()
