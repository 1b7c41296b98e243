"""The values of RES resources and how they are written as JSON.

A model is a dict, a collection a list; their values are JSON primitives,
references (``Ref``, ``SoftRef``) and data values (``Data``, RES 1.2.1) that
wrap JSON objects and arrays. ``DELETE`` in a change event deletes a property.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any


@dataclasses.dataclass(frozen=True)
class Ref:
    """A reference to another resource: ``{"rid": rid}``."""

    rid: str

    def to_json(self) -> dict[str, Any]:
        return {"rid": self.rid}


@dataclasses.dataclass(frozen=True)
class SoftRef(Ref):
    """A soft reference, which the gateway does not follow: ``{"rid": rid, "soft": true}``."""

    def to_json(self) -> dict[str, Any]:
        return {"rid": self.rid, "soft": True}


@dataclasses.dataclass(frozen=True)
class Data:
    """A data value: any JSON, even an object or array, as one value: ``{"data": value}``."""

    value: Any

    def to_json(self) -> dict[str, Any]:
        return {"data": self.value}


class _Delete:
    """The delete action of a change event."""

    def __repr__(self) -> str:
        return "DELETE"

    def to_json(self) -> dict[str, str]:
        return {"action": "delete"}


#: A change event value that deletes the property.
DELETE = _Delete()


@dataclasses.dataclass
class Model:
    """A get handler's result: a model's properties, and for a query model its normalized query."""

    properties: dict[str, Any]
    query: str | None = None


@dataclasses.dataclass
class Collection:
    """A get handler's result: a collection's values, and for a query collection its normalized query."""

    values: list[Any]
    query: str | None = None


@dataclasses.dataclass(frozen=True)
class ResourceResult:
    """A call or auth result that points the client at a resource: ``{"resource": {"rid": rid}}``."""

    rid: str


def _default(value: Any) -> Any:
    to_json = getattr(value, "to_json", None)
    if to_json is not None:
        return to_json()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def encode(value: Any) -> bytes:
    """Compact JSON bytes of ``value``; references, data values, DELETE and dataclasses encoded."""
    return json.dumps(value, default=_default, separators=(",", ":"), ensure_ascii=False).encode()


def to_plain(value: Any) -> Any:
    """``value`` as plain JSON types (dict, list, str, ...), references written out."""
    return json.loads(encode(value))


def decode_value(value: Any) -> Any:
    """A received resource value as a Python value: ``{"rid"}`` a Ref, ``{"data"}`` a Data."""
    if isinstance(value, dict):
        if isinstance(value.get("rid"), str):
            return SoftRef(value["rid"]) if value.get("soft") is True else Ref(value["rid"])
        if "data" in value:
            return Data(value["data"])
        if value.get("action") == "delete":
            return DELETE
    return value
