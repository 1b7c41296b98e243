"""Hostile traffic: hundreds of random subjects and payloads, each answered once, and the service carries on.

A seeded generator (so a failure replays) mixes malformed JSON, random
bytes, deep nesting, wrong types in every payload field, and subjects with
empty tokens, wildcards and unknown kinds, on the in-memory bus.
"""

from __future__ import annotations

import asyncio
import json
import random

from resservice import MemoryBus, Service
from resservice.bus import Message
from tests.rig.svc import on_asyncio

SEED = 19
MESSAGES = 400
#: The bound on the replies arriving once everything is sent.
SETTLE = 5.0

KINDS = ["access", "get", "call", "auth", "new", "event", ""]
TOKENS = ["hostile", "model", "1", "$id", "*", ">", "", " ", "ä", "x" * 300, "set", "new"]
FIELDS = ["cid", "token", "params", "query", "header", "host", "remoteAddr", "uri", "isHttp"]
VALUES = [None, True, 0, -1, 1e308, "", "x" * 10000, [], {}, [[[[[]]]]], {"a": {"b": [1, None]}}]


def payloads(rng: random.Random) -> bytes:
    choice = rng.randrange(6)
    if choice == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
    if choice == 1:
        return b"{" * rng.randrange(1, 5000)
    if choice == 2:
        return json.dumps(rng.choice(VALUES)).encode()
    if choice == 3:
        return b""
    fields = {rng.choice(FIELDS): rng.choice(VALUES) for _ in range(rng.randrange(1, 6))}
    return json.dumps(fields).encode()


def subjects(rng: random.Random) -> str:
    tokens = [rng.choice(KINDS)] + [rng.choice(TOKENS) for _ in range(rng.randrange(0, 5))]
    if rng.random() < 0.5:
        tokens[1:3] = ["hostile", "model"]
    return ".".join(tokens)


@on_asyncio
async def test_random_hostile_requests_are_each_answered_once(service_log):
    service = Service("hostile")
    service.access(">")(lambda r: True)
    service.model("model")(lambda r: {"ok": True})
    service.model("model.$id")(lambda r: {"id": r.path_params["id"], "params": r.parse_params()})
    service.call("model", "set")(lambda r: r.parse_params())
    service.auth("model", "login")(lambda r: r.token)
    service.new("model")(lambda r: "hostile.model.1")
    bus = MemoryBus()
    await service.start(bus)
    replies: dict[str, list[Message]] = {}
    await bus.subscribe("_INBOX.hostile.>", lambda m: replies.setdefault(m.subject, []).append(m))

    rng = random.Random(SEED)
    sent: dict[str, str] = {}
    for i in range(MESSAGES):
        subject, reply = subjects(rng), f"_INBOX.hostile.{i}"
        try:
            await bus.publish(subject, payloads(rng), reply=reply)
        except ValueError:
            continue  # the bus itself refuses it (over max_payload)
        sent[reply] = subject
    await bus.flush()  # every request delivered
    await asyncio.wait_for(service._workers.idle(), SETTLE)
    await service.flush()

    for reply, answers in replies.items():
        assert len(answers) == 1, (sent[reply], answers)
        answer = json.loads(answers[0].data)
        assert ("result" in answer) != ("error" in answer) or "resource" in answer, (sent[reply], answer)
    # Whatever reached a subscription was answered; nothing else was.
    assert set(replies) <= set(sent)
    assert len(replies) > MESSAGES // 10, len(replies)
    for line in service_log.errors:
        assert "bad request" in line or "the handler raised" in line, line

    assert json.loads((await bus.request("get.hostile.model", b"", 5)).data) == {"result": {"model": {"ok": True}}}
    await service.shutdown()
