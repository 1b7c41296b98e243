"""Stores: where a service keeps its resources, and handlers that serve them and derive their events.

A store maps IDs to JSON objects and tells its listeners of every change
(``on_change(id, before, after)``). ``serve_models`` serves a pattern's
models from a store and publishes change, create and delete events as the
store changes; ``serve_query`` serves a collection of references whose
query (``?author=Orwell``) selects IDs, and publishes query events when
the store changes. ``MemoryStore`` keeps everything in a dict;
``resservice.sqlite.SQLiteStore`` keeps it in an SQLite database.
"""

from __future__ import annotations

import copy
import threading
from typing import Any, Callable, Iterator, Protocol

from resservice import errors
from resservice.pattern import Pattern, join
from resservice.request import Request
from resservice.service import Service
from resservice.values import DELETE, Collection, Ref, to_plain

ChangeListener = Callable[[str, "dict[str, Any] | None", "dict[str, Any] | None"], None]


class Store(Protocol):
    """What the handlers need from a store."""

    def read(self, id: str) -> dict[str, Any]:
        """The value of ``id``; ``KeyError`` when there is none."""

    def items(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every (id, value)."""

    def on_change(self, listener: ChangeListener) -> None:
        """Call ``listener(id, before, after)`` after every change (None: did not exist / deleted)."""


class ChangeNotifier:
    """The listeners of a store, told of each change in the order made."""

    def __init__(self) -> None:
        self._listeners: list[ChangeListener] = []

    def on_change(self, listener: ChangeListener) -> None:
        self._listeners.append(listener)

    def _changed(self, id: str, before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:
        for listener in self._listeners:
            listener(id, before, after)


class MemoryStore(ChangeNotifier):
    """A store in a dict: for tests, examples and data that may be lost on restart."""

    def __init__(self, values: dict[str, dict[str, Any]] | None = None) -> None:
        super().__init__()
        self._values: dict[str, dict[str, Any]] = {k: copy.deepcopy(v) for k, v in (values or {}).items()}
        self._lock = threading.Lock()

    def read(self, id: str) -> dict[str, Any]:
        return copy.deepcopy(self._values[id])

    def items(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for id, value in list(self._values.items()):
            yield id, copy.deepcopy(value)

    def create(self, id: str, value: dict[str, Any]) -> None:
        """Add ``id``; ``ValueError`` when it exists."""
        with self._lock:
            if id in self._values:
                raise ValueError(f"{id!r} exists")
            self._values[id] = to_plain(value)
        self._changed(id, None, copy.deepcopy(self._values[id]))

    def update(self, id: str, changes: dict[str, Any]) -> None:
        """Change properties of ``id`` (``DELETE`` removes one); ``KeyError`` when it does not exist."""
        with self._lock:
            before = self._values[id]
            after = apply_changes(before, changes)
            if after == before:
                return
            self._values[id] = after
        self._changed(id, copy.deepcopy(before), copy.deepcopy(after))

    def delete(self, id: str) -> None:
        """Remove ``id``; ``KeyError`` when it does not exist."""
        with self._lock:
            before = self._values.pop(id)
        self._changed(id, before, None)


def apply_changes(value: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``value`` with ``changes`` applied (``DELETE`` removes a property)."""
    result = copy.deepcopy(value)
    for key, new in changes.items():
        if new is DELETE:
            result.pop(key, None)
        else:
            result[key] = to_plain(new)
    return result


def changed_values(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The change event values that turn ``before`` into ``after``."""
    values: dict[str, Any] = {k: v for k, v in after.items() if before.get(k, DELETE) != v}
    values.update({k: DELETE for k in before if k not in after})
    return values


def list_events(before: list[Any], after: list[Any]) -> list[tuple[str, Any, int]]:
    """Remove and add events ("remove", None, idx) / ("add", value, idx) that turn ``before`` into ``after``."""
    events: list[tuple[str, Any, int]] = []
    current = list(before)
    keep = set(map(repr, after))
    for idx in range(len(current) - 1, -1, -1):
        if repr(current[idx]) not in keep:
            events.append(("remove", None, idx))
            del current[idx]
    for idx, value in enumerate(after):
        if idx < len(current) and current[idx] == value:
            continue
        if value in current[idx:]:
            # Moved: taken from where it is, put here.
            old = current.index(value, idx)
            events.append(("remove", None, old))
            del current[old]
        events.append(("add", value, idx))
        current.insert(idx, value)
    for idx in range(len(current) - 1, len(after) - 1, -1):
        events.append(("remove", None, idx))
    return events


def _single_param(pattern: Pattern) -> str:
    params = [t for t in pattern.tokens if t.startswith("$")]
    if len(params) != 1 or pattern.has_wildcard:
        raise ValueError(f"a store pattern has exactly one $param (the ID) and no '>': {pattern.text!r}")
    return params[0]


def serve_models(service: Service, pattern: str, store: Store,
                 transform: Callable[[str, dict[str, Any]], dict[str, Any]] | None = None) -> Callable[[str], str]:
    """Serve the models of ``pattern`` (one ``$param``, the ID) from ``store``, with their events.

    ``transform(id, value)`` turns a stored value into the model clients see
    (references, say). Returns the function that gives an ID's resource name.
    """
    parsed = Pattern(join(service.path, pattern))
    param = _single_param(parsed)

    def rid_of(id: str) -> str:
        return ".".join(id if t == param else t for t in parsed.tokens)

    def model(id: str, value: dict[str, Any]) -> dict[str, Any]:
        return transform(id, value) if transform is not None else value

    def get(request: Request) -> dict[str, Any]:
        id = request.path_params[param[1:]]
        try:
            return model(id, store.read(id))
        except KeyError:
            raise errors.not_found() from None

    def changed(id: str, before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:
        if service.state != "serving":
            return
        resource = service.resource(rid_of(id))
        if before is None:
            resource.create(after)
        elif after is None:
            resource.delete()
        else:
            resource.change(changed_values(model(id, before), model(id, after)))

    service.handle(pattern, get=get, kind="model")
    store.on_change(changed)
    return rid_of



def serve_query(service: Service, pattern: str, store: Store,
                search: Callable[[Store, dict[str, list[str]]], list[str]],
                rid_of: Callable[[str], str],
                normalize: Callable[[dict[str, list[str]]], str] | None = None) -> None:
    """Serve the collection ``pattern``: references to the IDs ``search(store, query)`` selects.

    ``search`` gets the parsed query (``{"author": ["Orwell"]}``) and raises
    ``invalid_query`` for a bad one; ``normalize`` gives the normalized
    query (by default, the keys sorted). When the store changes, a query
    event lets the gateway ask again for each query it holds; a collection
    got without a query gets add and remove events.
    """
    full = join(service.path, pattern)
    Pattern(full)
    plain: dict[str, list[Any]] = {}

    def normalized(query: dict[str, list[str]]) -> str:
        if normalize is not None:
            return normalize(query)
        return "&".join(f"{k}={v}" for k in sorted(query) for v in query[k])

    def refs(query: dict[str, list[str]]) -> list[Ref]:
        return [Ref(rid_of(id)) for id in search(store, query)]

    def get(request: Request) -> Collection:
        query = request.parse_query()
        values = refs(query)
        if request.query is None:
            plain[request.rid] = values
            return Collection(values)
        return Collection(values, query=normalized(query))

    def answer(request: Any) -> Collection:
        return Collection(refs(request.parse_query()))

    def changed(id: str, before: Any, after: Any) -> None:
        if service.state != "serving" or "$" in full or ">" in full:
            return
        resource = service.resource(full)
        resource.query_event(answer)
        if full in plain:
            values = refs({})
            for name, value, idx in list_events(plain[full], values):
                if name == "add":
                    resource.add(value, idx)
                else:
                    resource.remove(idx)
            plain[full] = values

    service.handle(pattern, get=get, kind="collection")
    store.on_change(changed)
