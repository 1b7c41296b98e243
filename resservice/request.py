"""One request from a gateway (or another service), as its handler sees it."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import TYPE_CHECKING, Any, TypeVar

from resservice import errors
from resservice.resource import Resource

if TYPE_CHECKING:
    from resservice.mux import Handler
    from resservice.service import Service

T = TypeVar("T")

#: The request kinds of the RES service protocol (``new`` is a call of method new).
KINDS = ("access", "get", "call", "auth")


@dataclasses.dataclass
class Access:
    """An access handler's result: whether the client may get the resource, which methods it may call.

    ``call`` is a comma-separated list of methods, ``"*"`` for any.
    """

    get: bool = False
    call: str | None = None

    def to_json(self) -> dict[str, Any]:
        result: dict[str, Any] = {}
        if self.get:
            result["get"] = True
        if self.call:
            result["call"] = self.call
        return result


#: Full access: get, and call any method.
ACCESS_GRANTED = Access(get=True, call="*")


class Request(Resource):
    """A request: ``kind`` (access, get, call, auth), the resource, and the payload's fields.

    The payload's fields are attributes: ``params``, ``token``, ``cid``,
    ``query``, ``header``, ``host``, ``remote_addr``, ``uri``, ``is_http``
    (None, or False, where the request has none). ``path_params`` holds the
    values of the pattern's ``$name`` tokens. Events made through the
    request (``request.change(...)``) go out before its reply.
    """

    def __init__(self, service: "Service", kind: str, rid: str, method: str | None,
                 handler: "Handler", path_params: dict[str, str], payload: dict[str, Any],
                 group: str, reply: str | None) -> None:
        query = payload.get("query")
        super().__init__(service, rid, handler, path_params,
                         query if isinstance(query, str) else None, group)
        self.kind = kind
        self.method = method
        self.payload = payload
        self.reply = reply
        self.params = payload.get("params")
        self.token = payload.get("token")
        cid = payload.get("cid")
        self.cid: str | None = cid if isinstance(cid, str) else None
        self.header: dict[str, list[str]] | None = payload.get("header")
        self.host: str | None = payload.get("host")
        self.remote_addr: str | None = payload.get("remoteAddr")
        self.uri: str | None = payload.get("uri")
        self.is_http: bool = payload.get("isHttp") is True
        self.answered = False
        self.response_status: int | None = None
        self.response_header: dict[str, list[str]] = {}
        #: When (event loop time) the requester stops waiting: the handler's bound, moved by ``timeout()``.
        self.deadline: float | None = None

    # --- parsing

    def parse_params(self, into: type[T] | None = None) -> Any:
        """The params, as they are or as an instance of dataclass ``into``.

        Params that do not fit ``into`` raise InvalidParams, which answers the request.
        """
        return _parse(self.params, into, errors.invalid_params)

    def parse_token(self, into: type[T] | None = None) -> Any:
        """The token, as it is or as an instance of dataclass ``into`` (no token: None)."""
        if self.token is None:
            return None
        return _parse(self.token, into, lambda message: errors.internal_error(f"invalid token: {message}"))

    # --- the response

    def timeout(self, seconds: float) -> None:
        """Tell the requester to wait ``seconds`` for this request (a pre-response)."""
        if not seconds > 0:
            raise ValueError("a timeout is a positive number of seconds")
        self.service._pre_response(self, seconds)

    def set_response_status(self, status: int) -> None:
        """The HTTP status of the gateway's answer (RES 1.2.3 meta), for HTTP requests and upgrades.

        A 3XX status redirects (with a ``Location`` header), a 4XX or 5XX one
        answers with that error.
        """
        if type(status) is not int or not 100 <= status <= 599:
            raise ValueError(f"invalid HTTP status {status!r}")
        self.response_status = status

    def add_response_header(self, name: str, value: str) -> None:
        """Add an HTTP header to the gateway's answer (RES 1.2.3 meta)."""
        if not name or any(c in name for c in ":\r\n ") or any(c in value for c in "\r\n\x00"):
            raise ValueError(f"invalid header {name!r}: {value!r}")
        self.response_header.setdefault(name, []).append(value)

    def meta(self) -> dict[str, Any] | None:
        """The response's meta object, when the handler set any."""
        if self.response_status is None and not self.response_header:
            return None
        meta: dict[str, Any] = {}
        if self.response_status is not None:
            meta["status"] = self.response_status
        if self.response_header:
            meta["header"] = self.response_header
        return meta

    def __repr__(self) -> str:
        method = f".{self.method}" if self.method else ""
        return f"<Request {self.kind} {self.rid}{method}>"


def _parse(value: Any, into: type | None, error: Any) -> Any:
    if into is None:
        return value
    if not dataclasses.is_dataclass(into):
        raise TypeError(f"{into!r} is not a dataclass")
    if not isinstance(value, dict):
        raise error("expected an object")
    hints = typing.get_type_hints(into)
    fields = {f.name: f for f in dataclasses.fields(into) if f.init}
    unknown = set(value) - set(fields)
    if unknown:
        raise error(f"unknown field {sorted(unknown)[0]!r}")
    kwargs: dict[str, Any] = {}
    for name, field in fields.items():
        if name not in value:
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                raise error(f"missing field {name!r}")
            continue
        if not _fits(value[name], hints.get(name, Any)):
            raise error(f"field {name!r} is not of type {_type_name(hints.get(name))}")
        kwargs[name] = value[name]
    return into(**kwargs)


def _fits(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a type hint (str, int, float, bool, list, dict, Optional, unions)."""
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in typing.get_args(hint))
    if hint is type(None) or hint is None:
        return value is None
    if origin is not None:
        hint = origin
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint)
