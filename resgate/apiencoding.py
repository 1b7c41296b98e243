"""Encodings of the HTTP API (``--apiencoding``): ``json`` and ``jsonflat``.

A resource fetched over HTTP is sent as plain JSON with what it references
nested inside, the way Resgate encodes it:

* ``json``: a reference becomes ``{"href": <path>, "model": {...}}`` (or
  ``"collection"``, or ``"error"`` when the referenced resource failed); a
  reference back to a resource being encoded (a cycle) and a soft reference
  become ``{"href": <path>}`` alone.
* ``jsonflat``: a reference becomes the referenced model or collection
  itself (or its error object); cycles and soft references become
  ``{"href": <path>}``.

Data values are unwrapped in both. A path is the API path followed by the
resource ID with its dots as slashes, each part percent-escaped.

The encoders write bytes piece by piece, without recursion, rather than
building one Python object: orjson refuses to nest deeper than 255 levels
and Python recursion ends near 1000 frames, while a chain of references
from a service can be longer than either. A model or collection holding
only primitives is written from the cache's shared encoding of it.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol
from urllib.parse import quote

import orjson

from resgate import codec, errors
from resgate.cache.resources import TYPE_COLLECTION, TYPE_MODEL

#: The Content-Type of every API response with a body.
CONTENT_TYPE = b"application/json; charset=utf-8"

# Go's url.PathEscape leaves these unescaped in a path segment (besides
# letters, digits and "-._~", which quote never escapes).
_PATH_SEGMENT_SAFE = "$&+:=@"

_DATA_TYPES = (codec.VALUE_REFERENCE, codec.VALUE_SOFT_REFERENCE, codec.VALUE_DATA)

_dumps = orjson.dumps


def rid_to_path(rid: str, api_path: str) -> str:
    """The URL path of a resource: ``test.model?q=1`` -> ``/api/test/model%3Fq=1``."""
    if not rid:
        return ""
    return api_path + quote(rid, safe=_PATH_SEGMENT_SAFE).replace(".", "/")


def encode_error(error: errors.ResError) -> bytes:
    """An error object as a response body."""
    return _dumps(error.to_dict())


#: The body of every 404 the API path answers for an invalid URL.
NOT_FOUND_BODY = encode_error(errors.NOT_FOUND)


def encode_result(result: Any) -> bytes | None:
    """A call result as a response body; None (no content) for a null result."""
    return None if result is None else _dumps(result)


class ApiEncoder(Protocol):
    def encode_resource(self, sub: Any) -> bytes:
        """A loaded subscription and what it references, as the response body."""


# Marks the end of a resource's values in the work stack of an encoding.
_LEAVE = object()


class _Encoder:
    """Writes a subscription and its references without recursion.

    The work is a stack of pieces: bytes to write, a referenced
    subscription to expand, or _LEAVE when the values of the innermost
    resource being encoded are done (cycles are detected against the
    resources being encoded, the ancestors).
    """

    def __init__(self, api_path: str) -> None:
        self.api_path = api_path

    def encode_resource(self, sub: Any) -> bytes:
        out: list[bytes] = []
        # The resources being encoded, innermost last (a dict: ordered, quick to search).
        ancestors: dict[str, None] = {}
        work: list[Any] = self._expand(sub, ancestors, top=True)[::-1]
        while work:
            piece = work.pop()
            if piece.__class__ is bytes:
                out.append(piece)
            elif piece is _LEAVE:
                ancestors.popitem()
            else:
                work.extend(reversed(self._expand(piece, ancestors, top=False)))
        return b"".join(out)

    def _expand(self, sub: Any, ancestors: dict[str, None], top: bool) -> list[Any]:
        """The pieces of ``sub``: as the response itself (``top``) or as a reference."""
        raise NotImplementedError

    def _href(self, rid: str) -> bytes:
        return b'{"href":' + _dumps(rid_to_path(rid, self.api_path)) + b"}"

    def _values(self, sub: Any) -> list[Any]:
        """The pieces of the model or collection of ``sub``; references left to expand."""
        if sub.type == TYPE_MODEL:
            values = sub.model.values
            if _is_plain(values.values()):
                return [_dumps(sub.model.json())]
            pieces: list[Any] = [b"{"]
            for i, (key, value) in enumerate(values.items()):
                pieces.append((b"," if i else b"") + _dumps(key) + b":")
                pieces.append(self._value(sub, value))
            pieces.append(b"}")
            return pieces
        if sub.type == TYPE_COLLECTION:
            items = sub.collection.values
            if _is_plain(items):
                return [_dumps(sub.collection.json())]
            pieces = [b"["]
            for i, value in enumerate(items):
                if i:
                    pieces.append(b",")
                pieces.append(self._value(sub, value))
            pieces.append(b"]")
            return pieces
        return [b"null"]

    def _value(self, sub: Any, value: codec.Value) -> Any:
        if value.type == codec.VALUE_REFERENCE:
            assert value.rid is not None  # references have one
            child = sub.refs.get(value.rid)
            # Not held (the parent failed half-way): point at it instead.
            return self._href(value.rid) if child is None else child
        if value.type == codec.VALUE_SOFT_REFERENCE:
            assert value.rid is not None  # references have one
            return self._href(value.rid)
        if value.type == codec.VALUE_DATA:
            return _dumps(value.raw["data"])
        return _dumps(value.raw)


def _is_plain(values) -> bool:
    """Whether every value is a primitive, so the cache's own encoding is the answer."""
    return all(value.type not in _DATA_TYPES for value in values)


class JsonEncoder(_Encoder):
    """``json``: references as ``{"href", "model" | "collection" | "error"}`` objects."""

    def _expand(self, sub: Any, ancestors: dict[str, None], top: bool) -> list[Any]:
        rid = sub.rid
        if rid in ancestors:
            return [self._href(rid)]
        error = sub.current_error()
        if top:
            if error is not None:
                return [encode_error(error)]
            ancestors[rid] = None
            return self._values(sub) + [_LEAVE]
        opening = b'{"href":' + _dumps(rid_to_path(rid, self.api_path))
        if error is not None:
            return [opening + b',"error":' + encode_error(error) + b"}"]
        ancestors[rid] = None
        kind = b',"collection":' if sub.type == TYPE_COLLECTION else b',"model":'
        return [opening + kind, *self._values(sub), _LEAVE, b"}"]


class JsonFlatEncoder(_Encoder):
    """``jsonflat``: references as the referenced resource itself."""

    def _expand(self, sub: Any, ancestors: dict[str, None], top: bool) -> list[Any]:
        rid = sub.rid
        if rid in ancestors:
            return [self._href(rid)]
        error = sub.current_error()
        if error is not None:
            return [encode_error(error)]
        ancestors[rid] = None
        return self._values(sub) + [_LEAVE]


_ENCODERS: dict[str, Callable[[str], ApiEncoder]] = {
    "json": JsonEncoder,
    "jsonflat": JsonFlatEncoder,
}


def api_encoder(name: str, api_path: str) -> ApiEncoder:
    """The encoder named by ``--apiencoding`` (case-insensitive); KeyError if unknown."""
    return _ENCODERS[name.lower()](api_path)
