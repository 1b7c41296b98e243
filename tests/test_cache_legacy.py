"""The legacy (protocol 1.2.0) form of cached resources (Resgate's 60rescache_legacy scenarios).

Unit tests of resgate.cache.resources and resgate.codec, as upstream tests its
rescache legacy marshalers: a soft reference becomes its resource ID, a
data value wrapping an object or array becomes ``"[Data]"``, a data value
wrapping a primitive becomes that primitive.

| upstream test function | pytest test(s) here |
| --- | --- |
| TestLegacy120Model_MarshalJSON_ReturnsSoftReferenceAsString | test_legacy_model_has_soft_reference_as_string |
| TestLegacy120Model_MarshalJSON_ReturnsDataValuePlaceholder | test_legacy_model_has_data_value_placeholder |
| TestLegacy120Collection_MarshalJSON_ReturnsSoftReferenceAsString | test_legacy_collection_has_soft_reference_as_string |
| TestLegacy120Collection_MarshalJSON_ReturnsDataValuePlaceholder | test_legacy_collection_has_data_value_placeholder |
| TestLegacy120Value_MarshalJSON_ReturnsSoftReferenceAsString | test_legacy_value_of_soft_reference_is_string |

All ported. Each test also checks that the ordinary (current protocol)
encoding of the same resource keeps the service's values.
"""

import json

import orjson

from resgate.cache.resources import Collection, Model
from resgate.codec import decode_value


def encoded(fragment) -> object:
    return json.loads(orjson.dumps(fragment))


def model(raw: str) -> Model:
    return Model({k: decode_value(v) for k, v in json.loads(raw).items()})


def collection(raw: str) -> Collection:
    return Collection([decode_value(v) for v in json.loads(raw)])


def test_legacy_model_has_soft_reference_as_string():
    m = model('{"name":"softparent","child":{"rid":"test.model","soft":true}}')
    assert encoded(m.legacy_json()) == {"name": "softparent", "child": "test.model"}
    assert encoded(m.json()) == {"name": "softparent", "child": {"rid": "test.model", "soft": True}}


def test_legacy_model_has_data_value_placeholder():
    m = model('{"name":"data","primitive":{"data":12},"object":{"data":{"foo":["bar"]}},'
              '"array":{"data":[{"foo":"bar"}]}}')
    assert encoded(m.legacy_json()) == {"name": "data", "primitive": 12, "object": "[Data]", "array": "[Data]"}
    assert encoded(m.json()) == {"name": "data", "primitive": 12, "object": {"data": {"foo": ["bar"]}},
                                 "array": {"data": [{"foo": "bar"}]}}


def test_legacy_collection_has_soft_reference_as_string():
    c = collection('["softparent",{"rid":"test.model","soft":true}]')
    assert encoded(c.legacy_json()) == ["softparent", "test.model"]
    assert encoded(c.json()) == ["softparent", {"rid": "test.model", "soft": True}]


def test_legacy_collection_has_data_value_placeholder():
    c = collection('["data",{"data":12},{"data":{"foo":["bar"]}},{"data":[{"foo":"bar"}]}]')
    assert encoded(c.legacy_json()) == ["data", 12, "[Data]", "[Data]"]
    assert encoded(c.json()) == ["data", 12, {"data": {"foo": ["bar"]}}, {"data": [{"foo": "bar"}]}]


def test_legacy_value_of_soft_reference_is_string():
    value = decode_value({"rid": "test.model", "soft": True})
    assert value.legacy() == "test.model"
    assert value.raw == {"rid": "test.model", "soft": True}
