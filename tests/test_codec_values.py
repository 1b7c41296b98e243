"""Values and service responses as the codec reads them, and the reset diff."""

import random

import pytest

from resgate import codec, errors
from resgate.cache.resources import collection_diff


@pytest.mark.parametrize(
    "raw, kind, rid",
    [
        ("text", codec.VALUE_PRIMITIVE, None),
        (42, codec.VALUE_PRIMITIVE, None),
        (None, codec.VALUE_PRIMITIVE, None),
        (True, codec.VALUE_PRIMITIVE, None),
        ({"rid": "a.b"}, codec.VALUE_REFERENCE, "a.b"),
        ({"rid": "a.b?q=1"}, codec.VALUE_REFERENCE, "a.b?q=1"),
        ({"rid": "a.b", "soft": True}, codec.VALUE_SOFT_REFERENCE, "a.b"),
        ({"rid": "a.b", "soft": False}, codec.VALUE_REFERENCE, "a.b"),
        ({"data": {"x": [1]}}, codec.VALUE_DATA, None),
        ({"data": [1, 2]}, codec.VALUE_DATA, None),
        ({"action": "delete"}, codec.VALUE_DELETE, None),
    ],
)
def test_values_are_classified(raw, kind, rid):
    value = codec.decode_value(raw)
    assert value.type == kind
    assert value.rid == rid


def test_data_wrapping_a_primitive_is_that_primitive():
    value = codec.decode_value({"data": 7})
    assert value.type == codec.VALUE_PRIMITIVE and value.raw == 7


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"rid": ""}, 'requires a non-empty "rid"'),
        ({"rid": 5}, 'requires a non-empty "rid"'),
        ({"rid": "a..b"}, 'rid "a..b" is invalid'),
        ({"rid": "a.b", "data": 1}, "ambiguous"),
        ({"action": "delete", "data": 1}, "ambiguous"),
        ({"action": "drop"}, 'unknown action "drop"'),
        ({"x": 1}, "nested json object"),
        ([1], "nested json array"),
    ],
)
def test_invalid_values_are_internal_errors(raw, message):
    with pytest.raises(errors.ResError) as caught:
        codec.decode_value(raw)
    assert caught.value.code == errors.CODE_INTERNAL_ERROR
    assert message in caught.value.message


def test_json_values_compare_as_json():
    assert codec.decode_value(1) != codec.decode_value(True)
    assert codec.decode_value(1) != codec.decode_value(1.0)
    assert codec.decode_value({"rid": "a", "soft": False}) == codec.decode_value({"rid": "a"})
    assert codec.decode_value({"rid": "a"}) != codec.decode_value({"rid": "a", "soft": True})


@pytest.mark.parametrize(
    "payload, expected",
    [
        (b'{"result":{"get":true,"call":"set,foo"}}', (True, "set,foo", None)),
        (b'{"result":{"get":false}}', (False, None, None)),
        (b'{"error":{"code":"system.accessDenied","message":"Access denied"}}', (False, None, errors.CODE_ACCESS_DENIED)),
        (b'{"result":{"get":"yes"}}', (False, None, errors.CODE_INTERNAL_ERROR)),
        (b'{}', (False, None, errors.CODE_INTERNAL_ERROR)),
        (b'not json', (False, None, errors.CODE_INTERNAL_ERROR)),
        (b'[]', (False, None, errors.CODE_INTERNAL_ERROR)),
    ],
)
def test_access_responses(payload, expected):
    access, _meta = codec.decode_access_response(payload)
    assert (access.get, access.call, access.error.code if access.error else None) == expected


def test_call_access_lists_methods():
    access = codec.Access(get=True, call="set,foo")
    assert access.can_call("set") is None and access.can_call("foo") is None
    assert access.can_call("se") == errors.ACCESS_DENIED
    assert codec.Access(call="*").can_call("any") is None
    assert codec.Access(call="").can_call("any") == errors.ACCESS_DENIED


@pytest.mark.parametrize(
    "payload, code",
    [
        (b'{"result":{"model":{"a":{"x":1}}}}', errors.CODE_INTERNAL_ERROR),
        (b'{"result":{"model":{"a":{"action":"delete"}}}}', errors.CODE_INTERNAL_ERROR),
        (b'{"result":{"model":{},"collection":[]}}', errors.CODE_INTERNAL_ERROR),
        (b'{"result":{}}', errors.CODE_INTERNAL_ERROR),
        (b'{"result":null}', errors.CODE_INTERNAL_ERROR),
        (b'{"error":{"code":"system.notFound","message":"Not found"}}', errors.CODE_NOT_FOUND),
        (b'\xff\xfe', errors.CODE_INTERNAL_ERROR),
    ],
)
def test_broken_get_responses(payload, code):
    with pytest.raises(errors.ResError) as caught:
        codec.decode_get_response(payload)
    assert caught.value.code == code


def test_get_response_with_normalized_query():
    result = codec.decode_get_response(b'{"result":{"collection":[1,{"rid":"x"}],"query":"a=1"}}')
    assert [v.raw for v in result.collection] == [1, {"rid": "x"}]
    assert result.query == "a=1"


def test_request_payloads_have_resgates_fields():
    assert codec.create_request("c1", None) == b'{"token":null,"cid":"c1"}'
    assert codec.create_request("c1", {"u": 1}, query="q=1", params=None, is_http=True) == (
        b'{"params":null,"token":{"u":1},"query":"q=1","cid":"c1","isHttp":true}'
    )
    assert codec.create_get_request("") == b"{}"
    assert codec.create_get_request("a=b") == b'{"query":"a=b"}'


def lcs_length(a, b):
    """Length of the longest common subsequence (textbook dynamic programming)."""
    best = [0] * (len(b) + 1)
    for x in a:
        previous = best[:]
        for j, y in enumerate(b):
            best[j + 1] = previous[j] + 1 if x == y else max(best[j], previous[j + 1])
    return best[-1]


def apply(values, events):
    items = list(values)
    for event in events:
        if event.event == "remove":
            del items[event.payload["idx"]]
        else:
            items.insert(event.payload["idx"], codec.decode_value(event.payload["value"]))
    return items


def test_collection_diff_turns_one_collection_into_another():
    rng = random.Random(1234)
    for _ in range(500):
        a = [codec.decode_value(rng.randrange(6)) for _ in range(rng.randrange(8))]
        b = [codec.decode_value(rng.randrange(6)) for _ in range(rng.randrange(8))]
        events = collection_diff(a, b)
        assert apply(a, events) == b
        # Minimal: what is common to both is never removed and added back.
        removes = sum(1 for e in events if e.event == "remove")
        assert removes == len(a) - lcs_length([v.raw for v in a], [v.raw for v in b])
