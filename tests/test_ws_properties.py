"""Hostile client messages through a live gateway (hypothesis, a few examples).

The codec's properties are tested without a network in
tests/test_codec_properties.py; here a small number of generated messages
go over one real WebSocket, each followed by a ``version`` request: that
request is always answered, everything the gateway sends is a response
carrying an id and a result or an error (or neither, for an unsubscribe of
a resource an earlier example subscribed to: the examples share the
connection), the connection is never closed, and nothing is logged as an
error. Messages that reach a service (a valid subscribe, say) are left
unanswered by it and time out on the gateway's short request timeout.
"""

from __future__ import annotations

import json

import pytest
import pytest_twisted
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.rig.wsframes import OP_BINARY, OP_TEXT, connect_raw_ws, frame

pytestmark = pytest.mark.usefixtures("logged_errors", "logged_failures")

#: The id of the follow-up request; generated messages never use it.
PROBE_ID = 4_000_000_001

rid_parts = st.text(alphabet="".join(chr(c) for c in range(33, 127) if chr(c) not in ".*>?"), min_size=1,
                    max_size=6)
rids = st.lists(rid_parts, min_size=1, max_size=3).map(".".join)
methods = st.one_of(
    st.tuples(st.sampled_from(["subscribe", "get", "unsubscribe", "call", "auth", "new", "version", "x"]),
              st.one_of(rids, st.text(max_size=12))).map(".".join),
    st.text(max_size=20),
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(1 << 70), 1 << 70), st.floats(allow_nan=False),
              st.text(max_size=10)),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(st.text(max_size=5), children,
                                                                              max_size=3)),
    max_leaves=8,
)
requests = st.fixed_dictionaries(
    {"id": st.one_of(st.integers(0, 1 << 40).filter(lambda i: i != PROBE_ID), json_values),
     "method": st.one_of(methods, json_values)},
    optional={"params": json_values},
).map(lambda r: json.dumps(r).encode())
messages = st.one_of(requests, json_values.map(lambda v: json.dumps(v).encode()),
                     requests.map(lambda r: r[:len(r) // 2]),
                     st.text(max_size=30).map(str.encode))


@pytest_twisted.async_yield_fixture
async def client(gateway_factory, fake_service):
    gateway = await gateway_factory(request_timeout=100)
    client = await connect_raw_ws(gateway.port)
    yield client
    client.transport.loseConnection()


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(batch=st.lists(st.tuples(messages, st.booleans()), min_size=1, max_size=3))
@pytest_twisted.ensureDeferred
async def test_hostile_messages_leave_the_connection_serving(client, batch):
    for payload, binary in batch:
        client.send(frame(OP_BINARY if binary else OP_TEXT, payload))
    client.request(PROBE_ID, "version")
    assert (await client.response(PROBE_ID))["result"] == {"protocol": "1.2.3"}
    assert client.close_frame is None and not client.closed.called
    received, client.frames = client.frames, []
    for answer in received:
        assert answer.opcode == OP_TEXT, answer
        message = answer.json()
        assert isinstance(message, dict) and "id" in message, message
        # A successful unsubscribe has no result (as Resgate's); no response has both.
        assert set(message) <= {"id", "result", "error"}, message
        assert not ("result" in message and "error" in message), message
