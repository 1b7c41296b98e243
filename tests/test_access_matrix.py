"""Access is never leaked (docs/design.md, invariant 4), as a matrix.

A client sees a resource, and its events, while it holds it through a
direct subscription that its token is granted ``get`` access to, or through
a (non-soft) reference from a resource it holds that way: a referenced
resource needs no access check of its own, a soft-referenced one is not
sent at all. When access to a direct subscription is lost, the client gets
an ``unsubscribe`` event and from then on no event of that resource, nor of
the resources it reached only through it; what it still holds by another
permitted path keeps flowing.

The scenarios cross:

* how access is checked again (``TRIGGERS``): a new token
  (``conn.<cid>.token``), a ``reaccess`` event on the resource, or a
  ``system.reset`` whose access pattern matches it;
* how the service answers (``ANSWERS``): ``get: true``, ``get: false``, a
  ``system.accessDenied`` error, another error, no answer (a timeout);
* what the client holds (``HELD``): the resource directly, only through a
  reference, directly and through a reference, through a soft reference, at
  the end of a chain of references, through two parents;
* what flows afterwards: custom, change, add and remove events on every
  resource, events that add new references, and events on the new resources.

Every check of "nothing came" has a positive control: after the events that
must not arrive, the service sends an event on a resource the client holds
all along (``CONTROL``); the gateway handles NATS messages in order, so
anything forbidden would have reached the client before it. The test then
compares the whole list of what came with what must come.

Beyond the matrix:

* a refused subscribe (and any get) leaves no events behind, though the
  gateway loaded the resource and its references for it; a new token that
  grants access lets a new subscribe through;
* a resource the gateway keeps only for a subscribe still waiting for its
  access answer is not the client's: no events until the response;
* an access answer to a request made with the previous token does not
  stand for the new one: the gateway asks again with the current token
  before it answers a subscribe or lets a call through, and keeps nothing of
  the stale answer. (Resgate 1.8 lets such an answer stand: the client got
  the resource, then an ``unsubscribe``; a call went out with the new token
  on the old token's access.)

Complements test_ws_reaccess_event.py, test_ws_conn_event.py and
test_ws_system_event.py, whose scenarios check the requests and the
``unsubscribe`` events of one trigger each on test.model.parent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import pytest_twisted

from tests.rig.buses import OVER_BOTH_BUSES
from tests.rig.resources import (
    ERR_ACCESS_DENIED, ERR_TIMEOUT, assert_no_event, connect_client, event, flush_requests, get_cid,
)

pytestmark = [pytest.mark.usefixtures("logged_errors"), OVER_BOTH_BUSES]


def ref(rid: str, soft: bool = False) -> dict:
    return {"rid": rid, "soft": True} if soft else {"rid": rid}


#: The resource the client holds all along, the positive control of every "nothing came".
CONTROL = "am.ctl"

#: What the service serves. am.w is a collection; the others are models.
WORLD: dict[str, Any] = {
    "am.w": ["x"],
    "am.a": {"name": "a", "w": ref("am.w")},
    "am.b": {"name": "b", "w": ref("am.w")},
    "am.g": {"name": "g", "a": ref("am.a")},
    "am.s": {"name": "s", "w": ref("am.w", soft=True)},
    CONTROL: {"name": "control"},
    # Only events bring references to these.
    "am.n1": {"n": 1},
    "am.n2": {"n": 2},
    "am.n3": {"n": 3},
}
#: The resources only events reference.
ADDED = ["am.n1", "am.n2", "am.n3"]

#: Non-soft references, as served.
REFERENCES = {"am.a": ["am.w"], "am.b": ["am.w"], "am.g": ["am.a"]}

#: The resources that get events in every scenario (the control aside).
EVENTFUL = ["am.w", "am.a", "am.b", "am.g", "am.s"]

TOKEN = {"user": "first"}
NEW_TOKEN = {"user": "second"}
CUSTOM_ERROR = {"code": "custom.noAccess", "message": "No access for you"}

#: A pre-response that makes the gateway give up on the request soon (ms).
SHORT_TIMEOUT = b'timeout:"100"'


def closure(rids) -> list[str]:
    """``rids`` and what they reach through non-soft references, each once, in order."""
    seen: list[str] = []
    stack = list(reversed(list(rids)))
    while stack:
        rid = stack.pop()
        if rid in seen:
            continue
        seen.append(rid)
        stack.extend(reversed(REFERENCES.get(rid, [])))
    return seen


def client_form(rid: str) -> dict:
    group = "collections" if isinstance(WORLD[rid], list) else "models"
    return {group: {rid: WORLD[rid]}}


def resource_set(rids) -> dict:
    result: dict[str, dict] = {}
    for rid in rids:
        for group, values in client_form(rid).items():
            result.setdefault(group, {}).update(values)
    return result


# ---------------------------------------------------------------------------
# The service


def serve_gets(service) -> None:
    """Answer every get request of the world as served; access requests are the test's."""
    for rid, data in WORLD.items():
        key = "collection" if isinstance(data, list) else "model"
        service.on(f"get.{rid}", lambda request, key=key, data=data: request.respond_result({key: data}))


@dataclass(frozen=True)
class Answer:
    """How the service answers an access request, and the ``unsubscribe`` reason it makes."""

    name: str
    reason: dict | None

    def give(self, request) -> None:
        if self.name == "granted":
            request.respond_result({"get": True})
        elif self.name == "get-false":
            request.respond_result({"get": False, "call": "*"})
        elif self.name == "denied-error":
            request.respond_error(**ERR_ACCESS_DENIED)
        elif self.name == "other-error":
            request.respond_error(**CUSTOM_ERROR)
        elif self.name == "timeout":
            request.respond(SHORT_TIMEOUT)
        else:
            raise ValueError(self.name)


GRANTED = Answer("granted", None)
ANSWERS = {
    "granted": GRANTED,
    "get-false": Answer("get-false", ERR_ACCESS_DENIED),
    "denied-error": Answer("denied-error", ERR_ACCESS_DENIED),
    "other-error": Answer("other-error", CUSTOM_ERROR),
    "timeout": Answer("timeout", ERR_TIMEOUT),
}


# ---------------------------------------------------------------------------
# What the client holds


@dataclass(frozen=True)
class Held:
    """The client's direct subscriptions (besides the control) and the one whose access changes."""

    subs: tuple[str, ...]
    checked: str


HELD = {
    "direct": Held(("am.w",), "am.w"),
    "reference": Held(("am.a",), "am.a"),
    "nested-chain": Held(("am.g",), "am.g"),
    "soft-reference": Held(("am.s",), "am.s"),
    "both-parent-checked": Held(("am.a", "am.w"), "am.a"),
    "both-direct-checked": Held(("am.a", "am.w"), "am.w"),
    "two-parents": Held(("am.a", "am.b"), "am.a"),
}


async def subscribe(client, service, rid: str, answer: Answer = GRANTED) -> dict:
    """Subscribe to ``rid``; the service answers its access request with ``answer``."""
    pending = client.request(f"subscribe.{rid}")
    access = (await service.take(f"access.{rid}"))[f"access.{rid}"]
    answer.give(access)
    return await pending


async def client_holding(gateway, service, held: Held):
    """A client with a token, subscribed to the control and to ``held.subs``; (client, cid)."""
    client = await connect_client(gateway)
    cid = await get_cid(client, service)
    # A token event on a connection without a token only sets it; the next one re-checks.
    service.publish(f"conn.{cid}.token", {"token": TOKEN})
    await flush_requests(client, service, "am")
    holding: list[str] = []
    for rid in (CONTROL, *held.subs):
        response = await subscribe(client, service, rid)
        new = [r for r in closure([rid]) if r not in holding]
        # A soft reference is not followed: am.s comes without am.w.
        assert response.get("result") == resource_set(new), response
        holding.extend(new)
    return client, cid


# ---------------------------------------------------------------------------
# How access is checked again


def token_trigger(service, cid: str, held: Held) -> list[str]:
    service.publish(f"conn.{cid}.token", {"token": NEW_TOKEN})
    return [CONTROL, *held.subs]


def reaccess_trigger(service, cid: str, held: Held) -> list[str]:
    service.publish(f"event.{held.checked}.reaccess", None)
    return [held.checked]


def reset_trigger(service, cid: str, held: Held) -> list[str]:
    service.publish("system.reset", {"access": ["am.>"]})
    return [CONTROL, *held.subs]


#: Each publishes what makes the gateway check access again; the resources it asks about.
TRIGGERS = {"token": token_trigger, "reaccess": reaccess_trigger, "reset": reset_trigger}
#: The matrix dimension: the triggers by name.
TRIGGER_NAMES = {name: name for name in TRIGGERS}


async def take_access_requests(service, rids: list[str], token: Any) -> dict:
    """The access requests for ``rids`` (in any order), each checked to carry ``token``."""
    requests = await service.take(*(f"access.{rid}" for rid in rids))
    for rid in rids:
        payload = requests[f"access.{rid}"].payload
        assert payload["token"] == token, payload
    return requests


def token_after(trigger: str) -> Any:
    """The token of the access requests a trigger makes."""
    return NEW_TOKEN if trigger == "token" else TOKEN


# ---------------------------------------------------------------------------
# What flows afterwards


async def until_control(client, marker: str) -> list:
    """Send nothing; collect the client's messages up to the control's custom event ``marker``."""
    received = []
    while True:
        message = await client.next_message()
        if message == event(f"{CONTROL}.custom", {"marker": marker}):
            return received
        received.append(message)


def control(service, marker: str) -> None:
    service.event(CONTROL, "custom", {"marker": marker})


async def check_events_flow(client, service, holding: list[str]) -> None:
    """Events on every resource reach the client exactly when it holds the resource.

    ``holding``: what the client holds now (the control aside).
    """
    # Custom, change, add and remove events.
    published = []
    for rid in EVENTFUL:
        published.append(event(f"{rid}.custom", {"rid": rid}))
        if isinstance(WORLD[rid], list):
            published.append(event(f"{rid}.add", {"idx": 1, "value": "y"}))
            published.append(event(f"{rid}.remove", {"idx": 1}))
        else:
            published.append(event(f"{rid}.change", {"values": {"name": f"{rid}-2"}}))
    for message in published:
        rid, name = message["event"].rsplit(".", 1)
        service.event(rid, name, message["data"])
    control(service, "plain")
    expected = [m for m in published if m["event"].rsplit(".", 1)[0] in holding]
    assert await until_control(client, "plain") == expected

    # Events that add references: a change on am.a (to am.n1), an add on am.w (am.n2).
    adding = [
        ("am.a", event("am.a.change", {"values": {"extra": ref("am.n1")}}), "am.n1"),
        ("am.w", event("am.w.add", {"idx": 0, "value": ref("am.n2")}), "am.n2"),
    ]
    expected = []
    for rid, message, new in adding:
        service.event(rid, message["event"].rsplit(".", 1)[1], message["data"])
        if rid in holding:
            expected.append(event(message["event"], {**message["data"], **client_form(new)}))
    received = [await client.next_message() for _ in expected]
    assert sorted(received, key=str) == sorted(expected, key=str)

    # And events on the new resources reach the client only if the reference did.
    new_held = [new for rid, _, new in adding if rid in holding] + [rid for rid in holding if rid in ADDED]
    published = [event(f"{new}.custom", {"rid": new}) for new in ADDED]
    for message in published:
        service.event(message["event"].rsplit(".", 1)[0], "custom", message["data"])
    control(service, "new")
    assert await until_control(client, "new") == [m for m in published if m["event"].rsplit(".", 1)[0] in new_held]
    # Nothing more, not even late: gets the gateway asked for were answered before this round trip.
    await assert_no_event(client, service, "am")


# ---------------------------------------------------------------------------
# Scenarios


def matrix(*dimensions: dict) -> list:
    """Every combination of the named values of ``dimensions``, as pytest params."""
    combos: list[tuple[tuple, tuple]] = [((), ())]
    for values in dimensions:
        combos = [(ids + (name,), vals + (value,)) for ids, vals in combos for name, value in values.items()]
    return [pytest.param(*vals, id="-".join(ids)) for ids, vals in combos]


def pick(table: dict, *names: str) -> dict:
    return {name: table[name] for name in names}


async def recheck(gateway, service, trigger: str, held: Held, answer: Answer, during: bool):
    """A client holding ``held``; access is checked again and ``held.checked`` gets ``answer``.

    ``during``: while its access is being checked, ``held.checked`` gets a
    custom event and an event that references am.n3; they must wait for the
    answer, and reach the client (am.n3 with them) only if the client still
    holds the resource after it.
    Returns (client, what the client holds afterwards).
    """
    serve_gets(service)
    client, cid = await client_holding(gateway, service, held)
    asked = TRIGGERS[trigger](service, cid, held)
    requests = await take_access_requests(service, asked, token_after(trigger))
    for rid in asked:
        if rid != held.checked:
            GRANTED.give(requests[f"access.{rid}"])
    if during:
        queued = [event(f"{held.checked}.custom", {"during": True}), referencing_n3(held.checked)]
        for message in queued:
            service.event(held.checked, message["event"].rsplit(".", 1)[1], message["data"])
        # Held back while access is checked (nothing else got an event).
        await assert_no_event(client, service, "am")
    answer.give(requests[f"access.{held.checked}"])

    kept = [rid for rid in held.subs if answer.reason is None or rid != held.checked]
    holding = closure(kept)
    if answer.reason is not None:
        assert await client.next_message() == event(f"{held.checked}.unsubscribe", {"reason": answer.reason})
    if during and held.checked in holding:
        queued[1]["data"].update(client_form("am.n3"))
        assert [await client.next_message() for _ in queued] == queued
        holding.append("am.n3")
    return client, holding


def referencing_n3(rid: str) -> dict:
    """An event on ``rid`` that adds a reference to am.n3 (a change, or an add to a collection)."""
    if isinstance(WORLD[rid], list):
        return event(f"{rid}.add", {"idx": 0, "value": ref("am.n3")})
    return event(f"{rid}.change", {"values": {"during": ref("am.n3")}})


@pytest.mark.parametrize("trigger, held, answer", matrix(TRIGGER_NAMES, HELD, ANSWERS))
@pytest_twisted.ensureDeferred
async def test_events_after_access_is_checked_again(gateway, fake_service, trigger, held, answer):
    client, holding = await recheck(gateway, fake_service, trigger, held, answer, during=False)
    await check_events_flow(client, fake_service, holding)


@pytest.mark.parametrize("trigger, held, answer", matrix(TRIGGER_NAMES, HELD, ANSWERS))
@pytest_twisted.ensureDeferred
async def test_events_while_access_is_checked_wait_for_the_answer(gateway, fake_service, trigger, held, answer):
    client, holding = await recheck(gateway, fake_service, trigger, held, answer, during=True)
    await check_events_flow(client, fake_service, holding)


# ---------------------------------------------------------------------------
# Access a subscribe asks for


async def check_not_visible(client, service, rids: list[str], marker: str) -> None:
    """Custom events on ``rids`` do not reach the client (the control's event does)."""
    for rid in rids:
        service.event(rid, "custom", {"rid": rid})
    control(service, marker)
    assert await until_control(client, marker) == []


@pytest.mark.parametrize("method, answer", [
    pytest.param(method, answer, id=f"{method}-{name}")
    for method in ("subscribe", "get") for name, answer in ANSWERS.items()
    if name != "granted"
] + [pytest.param("get", GRANTED, id="get-granted")])
@pytest.mark.parametrize("before", ["nothing", "w-through-b"])
@pytest_twisted.ensureDeferred
async def test_refused_subscribe_leaks_nothing_until_a_new_token_grants_it(gateway, fake_service, before,
                                                                            method, answer):
    """A refused subscribe (or any get) leaves no events behind, though the gateway loaded
    the resource and its references; a new token that grants access makes a new subscribe work.

    ``before``: the client already holds am.w (which am.a references) through am.b.
    """
    serve_gets(fake_service)
    held = Held(("am.b",) if before == "w-through-b" else (), "")
    client, cid = await client_holding(gateway, fake_service, held)
    holding = closure(held.subs)

    pending = client.request(f"{method}.am.a")
    access = (await fake_service.take("access.am.a"))["access.am.a"]
    # Events while access is asked for do not leak either.
    fake_service.event("am.a", "custom", {"early": True})
    await assert_no_event(client, fake_service, "am")
    answer.give(access)
    response = await pending
    if answer.reason is None:
        assert response.get("result") == resource_set(r for r in closure(["am.a"]) if r not in holding)
    else:
        assert response.get("error") == answer.reason, response
    await check_not_visible(client, fake_service, [r for r in ("am.a", "am.w") if r not in holding], "refused")

    # A new token: access is asked again only for the direct subscriptions.
    fake_service.publish(f"conn.{cid}.token", {"token": NEW_TOKEN})
    for request in (await take_access_requests(fake_service, [CONTROL, *held.subs], NEW_TOKEN)).values():
        GRANTED.give(request)
    response = await subscribe(client, fake_service, "am.a")
    assert response.get("result") == resource_set(r for r in closure(["am.a"]) if r not in holding), response
    await check_events_flow(client, fake_service, closure([*held.subs, "am.a"]))


@pytest.mark.parametrize("trigger", TRIGGER_NAMES)
@pytest.mark.parametrize("answer", pick(ANSWERS, "granted", "get-false").values(), ids=["granted", "get-false"])
@pytest_twisted.ensureDeferred
async def test_resource_kept_only_for_a_waiting_subscribe_gets_no_events(gateway, fake_service, trigger, answer):
    """The client holds am.w through am.a and subscribes to am.w; while that subscribe
    waits for access, access to am.a is lost. The gateway keeps am.w for the waiting
    subscribe, but the client no longer holds it: no events until the response,
    which carries am.w again if granted."""
    serve_gets(fake_service)
    held = Held(("am.a",), "am.a")
    client, cid = await client_holding(gateway, fake_service, held)
    pending = client.request("subscribe.am.w")
    waiting = (await fake_service.take("access.am.w"))["access.am.w"]

    asked = TRIGGERS[trigger](fake_service, cid, held)
    requests = await take_access_requests(fake_service, asked, token_after(trigger))
    for rid in asked:
        (ANSWERS["get-false"] if rid == "am.a" else GRANTED).give(requests[f"access.{rid}"])
    assert await client.next_message() == event("am.a.unsubscribe", {"reason": ERR_ACCESS_DENIED})
    await check_not_visible(client, fake_service, ["am.a", "am.w"], "waiting")

    if trigger == "token":
        # Asked with the previous token: the gateway asks again.
        GRANTED.give(waiting)
        waiting = (await take_access_requests(fake_service, ["am.w"], NEW_TOKEN))["access.am.w"]
        await assert_no_event(client, fake_service, "am")
    answer.give(waiting)
    response = await pending
    if answer.reason is None:
        assert response.get("result") == resource_set(["am.w"]), response
        if trigger != "reaccess":
            # am.w was checked again too, its events held back for the answer: the
            # client now holds am.w, as it was before them, so they follow.
            assert await client.next_message() == event("am.w.custom", {"rid": "am.w"})
    else:
        assert response.get("error") == answer.reason, response
    await check_events_flow(client, fake_service, ["am.w"] if answer.reason is None else [])


@pytest.mark.parametrize("answer", pick(ANSWERS, "granted", "get-false").values(), ids=["granted", "get-false"])
@pytest_twisted.ensureDeferred
async def test_access_asked_with_the_previous_token_does_not_answer_a_subscribe(gateway, fake_service, answer):
    """A subscribe's access request is on its way when the token changes: its answer
    speaks for the old token. The gateway asks again with the new one before it
    sends the client anything."""
    serve_gets(fake_service)
    client, cid = await client_holding(gateway, fake_service, Held((), ""))
    pending = client.request("subscribe.am.a")
    stale = (await fake_service.take("access.am.a"))["access.am.a"]
    assert stale.payload["token"] == TOKEN

    fake_service.publish(f"conn.{cid}.token", {"token": NEW_TOKEN})
    GRANTED.give((await take_access_requests(fake_service, [CONTROL], NEW_TOKEN))[f"access.{CONTROL}"])
    GRANTED.give(stale)
    fresh = (await fake_service.take("access.am.a"))["access.am.a"]
    assert fresh.payload["token"] == NEW_TOKEN
    await assert_no_event(client, fake_service, "am")
    assert not pending.called
    answer.give(fresh)

    response = await pending
    if answer.reason is None:
        assert response.get("result") == resource_set(closure(["am.a"])), response
    else:
        assert response.get("error") == answer.reason, response
    await check_events_flow(client, fake_service, closure(["am.a"]) if answer.reason is None else [])


@pytest_twisted.ensureDeferred
async def test_access_asked_with_the_previous_token_grants_nothing_later(gateway, fake_service):
    """The client holds am.a through am.g and calls a method on am.a; the token changes
    while that call's access request is on its way. Its answer, for the old token,
    neither lets the call through nor stays as am.a's access for a later subscribe."""
    serve_gets(fake_service)
    held = Held(("am.g",), "am.g")
    client, cid = await client_holding(gateway, fake_service, held)
    call = client.request("call.am.a.method")
    stale = (await fake_service.take("access.am.a"))["access.am.a"]

    fake_service.publish(f"conn.{cid}.token", {"token": NEW_TOKEN})
    for request in (await take_access_requests(fake_service, [CONTROL, "am.g"], NEW_TOKEN)).values():
        GRANTED.give(request)
    stale.respond_result({"get": True, "call": "*"})
    fresh = (await fake_service.take("access.am.a"))["access.am.a"]
    assert fresh.payload["token"] == NEW_TOKEN
    fresh.respond_result({"get": False})
    assert (await call).get("error") == ERR_ACCESS_DENIED

    fake_service.on("access.am.a", lambda request: request.respond_result({"get": False}))
    assert (await client.request("subscribe.am.a")).get("error") == ERR_ACCESS_DENIED
    # Still visible through am.g, until access to am.g is lost too.
    await check_events_flow(client, fake_service, closure(["am.g"]))
    fake_service.publish("event.am.g.reaccess", None)
    (await take_access_requests(fake_service, ["am.g"], NEW_TOKEN))["access.am.g"].respond_result({"get": False})
    assert await client.next_message() == event("am.g.unsubscribe", {"reason": ERR_ACCESS_DENIED})
    await check_not_visible(client, fake_service, ["am.g", "am.a", "am.w", "am.n1", "am.n2"], "lost")
