"""A resource as a handler sees it: its name, path parameters, and the events it publishes.

Events are published in the order they are made and, when made while
handling a request, before that request's reply.
"""

from __future__ import annotations

import dataclasses
import typing
import urllib.parse
from typing import TYPE_CHECKING, Any, Callable

from resservice import errors
from resservice.values import Collection, Model

if TYPE_CHECKING:
    from resservice.mux import Handler
    from resservice.service import Service

#: Event names the protocol defines; a custom event may not take one.
RESERVED_EVENTS = frozenset({"change", "add", "remove", "reaccess", "create", "delete", "unsubscribe",
                             "query", "patch", "reset", "token"})


@dataclasses.dataclass
class Event:
    """An event as listeners see it, after the apply handler (if any) ran.

    ``revert`` is what the apply handler returned: the old values of a
    change, the removed value of a remove, the deleted resource of a delete.
    """

    name: str
    rid: str
    data: Any = None
    revert: Any = None


class Resource:
    """One resource of the service: ``rid`` its name, ``path_params`` from its pattern."""

    def __init__(self, service: "Service", rid: str, handler: "Handler | None",
                 path_params: dict[str, str], query: str | None = None, group: str | None = None) -> None:
        self.service = service
        self.rid = rid
        self.handler = handler
        self.path_params = path_params
        self.query = query
        self.group = group if group is not None else rid

    @property
    def name(self) -> str:
        """The resource name (``rid`` without a query)."""
        return self.rid

    def path_param(self, name: str) -> str:
        """One path parameter; KeyError names it when the pattern has none by that name."""
        return self.path_params[name]

    def parse_query(self, into: type | None = None) -> Any:
        """The query as ``{key: [values]}`` (empty without one), or as an instance of dataclass ``into``.

        For a dataclass, a field typed ``list[...]`` takes every value of its
        key, any other field the last one, converted to the field's type
        (str, int, float, bool); what does not fit raises InvalidQuery.
        """
        values = urllib.parse.parse_qs(self.query or "", keep_blank_values=True)
        if into is None:
            return values
        return query_into(values, into)

    # --- value

    async def value(self) -> Model | Collection:
        """The resource as its get handler returns it (NotFound raised as ResError)."""
        return await self.service._get_value(self)

    # --- events

    def change(self, values: dict[str, Any]) -> None:
        """A model change event; ``DELETE`` as a value deletes the property.

        With an ``apply_change`` handler, it applies the change first and the
        event carries only the properties whose values it says changed.
        """
        if not isinstance(values, dict):
            raise TypeError("change values are a dict")
        revert = None
        apply = self.handler.apply_change if self.handler else None
        if apply is not None:
            revert = apply(self, values)
            if not revert:
                return
            values = {k: v for k, v in values.items() if k in revert}
        elif not values:
            return
        self._send("change", {"values": values}, Event("change", self.rid, values, revert))

    def add(self, value: Any, idx: int) -> None:
        """A collection add event: ``value`` inserted at ``idx``."""
        if not isinstance(idx, int) or idx < 0:
            raise ValueError(f"add index must be a non-negative int, not {idx!r}")
        apply = self.handler.apply_add if self.handler else None
        if apply is not None:
            apply(self, value, idx)
        self._send("add", {"value": value, "idx": idx}, Event("add", self.rid, {"value": value, "idx": idx}))

    def remove(self, idx: int) -> None:
        """A collection remove event: the value at ``idx`` removed."""
        if not isinstance(idx, int) or idx < 0:
            raise ValueError(f"remove index must be a non-negative int, not {idx!r}")
        apply = self.handler.apply_remove if self.handler else None
        revert = apply(self, idx) if apply is not None else None
        self._send("remove", {"idx": idx}, Event("remove", self.rid, {"idx": idx}, revert))

    def reaccess(self) -> None:
        """A reaccess event: the gateway asks again for access to the resource."""
        self.service._publish(f"event.{self.rid}.reaccess", None)

    def create(self, data: Any) -> None:
        """A resource was created: the ``apply_create`` handler and listeners learn of it.

        The protocol has no create event, so nothing is published; the gateway
        gets the resource when a client asks for it.
        """
        apply = self.handler.apply_create if self.handler else None
        if apply is not None:
            apply(self, data)
        self.service._notify(Event("create", self.rid, data))

    def delete(self) -> None:
        """A delete event: the resource is gone (the ``apply_delete`` handler removes it first)."""
        apply = self.handler.apply_delete if self.handler else None
        revert = apply(self) if apply is not None else None
        self._send("delete", None, Event("delete", self.rid, None, revert))

    def event(self, name: str, payload: Any = None) -> None:
        """A custom event, passed to clients as it is."""
        if not name or name in RESERVED_EVENTS or "." in name or any(c in name for c in "*> \t"):
            raise ValueError(f"invalid custom event name {name!r}")
        self.service._publish(f"event.{self.rid}.{name}", payload)

    def query_event(self, callback: Callable[..., Any]) -> None:
        """A query event: the gateway then sends a query request per query it holds.

        ``callback(request)`` gets a ``QueryRequest`` for each and answers with
        the events for that query (``request.change``, ``add``, ``remove``),
        or by returning the query resource whole (a ``Model`` or
        ``Collection``), or by raising NotFound.
        """
        self.service._query_event(self, callback)

    def _send(self, name: str, payload: Any, event: Event) -> None:
        self.service._publish(f"event.{self.rid}.{name}", payload)
        self.service._notify(event)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.rid}>"


def query_into(values: dict[str, list[str]], into: type) -> Any:
    """An instance of dataclass ``into`` from parsed query values."""
    if not dataclasses.is_dataclass(into):
        raise TypeError(f"{into!r} is not a dataclass")
    hints = typing.get_type_hints(into)
    fields = {f.name: f for f in dataclasses.fields(into) if f.init}
    unknown = set(values) - set(fields)
    if unknown:
        raise errors.invalid_query(f"unknown query key {sorted(unknown)[0]!r}")
    kwargs: dict[str, Any] = {}
    for name, field in fields.items():
        if name not in values:
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                raise errors.invalid_query(f"missing query key {name!r}")
            continue
        hint = hints.get(name, str)
        if typing.get_origin(hint) is list:
            (item,) = typing.get_args(hint) or (str,)
            kwargs[name] = [_query_value(name, v, item) for v in values[name]]
        else:
            kwargs[name] = _query_value(name, values[name][-1], hint)
    return into(**kwargs)


def _query_value(name: str, text: str, hint: Any) -> Any:
    try:
        if hint is bool:
            if text not in ("true", "false", "1", "0"):
                raise ValueError(text)
            return text in ("true", "1")
        if hint in (int, float):
            return hint(text)
    except ValueError:
        raise errors.invalid_query(f"query key {name!r} is not {getattr(hint, '__name__', hint)}") from None
    return text


class QueryRequest(Resource):
    """A query request after a query event: the events for one query, collected.

    ``query`` is the normalized query the gateway holds; ``parse_query``
    gives its values.
    """

    def __init__(self, service: "Service", rid: str, handler: "Handler | None",
                 path_params: dict[str, str], query: str, group: str) -> None:
        super().__init__(service, rid, handler, path_params, query, group)
        self.events: list[dict[str, Any]] = []

    def change(self, values: dict[str, Any]) -> None:
        if values:
            self.events.append({"event": "change", "data": {"values": values}})

    def add(self, value: Any, idx: int) -> None:
        self.events.append({"event": "add", "data": {"value": value, "idx": idx}})

    def remove(self, idx: int) -> None:
        self.events.append({"event": "remove", "data": {"idx": idx}})

    def not_found(self) -> None:
        raise errors.not_found()

