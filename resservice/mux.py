"""Routing: handlers registered by resource pattern, groups of them mounted under a prefix.

A ``Mux`` holds handlers; ``Service`` is one. ``mux.route("book")`` is a Mux
of handlers below ``book`` and ``mux.mount("shelf", other)`` puts a Mux made
elsewhere below ``shelf``. When a request arrives, the most specific pattern
wins: token by token, a literal beats a ``$param``, which beats ``>``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator

from resservice.pattern import Pattern, group_template, join

#: A handler: a plain function, an ``async def`` or one returning a Deferred.
HandlerFunc = Callable[..., Any]

_KINDS = ("model", "collection")


@dataclasses.dataclass
class Handler:
    """Everything registered for one resource pattern.

    ``get`` answers get requests; ``kind`` ("model" or "collection") says
    what it returns when known. ``access`` answers access requests, ``call``
    and ``auth`` map method names to handlers, ``new`` is the legacy new
    call. The ``apply_*`` handlers let the service update its data when it
    publishes an event (``resource.change`` calls ``apply_change``, ...).
    ``group`` names the worker group (``${param}`` expanded); requests of
    one group are handled one after the other. ``parallel`` handlers skip
    the group queue.
    """

    get: HandlerFunc | None = None
    kind: str | None = None
    access: HandlerFunc | None = None
    call: dict[str, HandlerFunc] = dataclasses.field(default_factory=dict)
    auth: dict[str, HandlerFunc] = dataclasses.field(default_factory=dict)
    new: HandlerFunc | None = None
    apply_change: HandlerFunc | None = None
    apply_add: HandlerFunc | None = None
    apply_remove: HandlerFunc | None = None
    apply_create: HandlerFunc | None = None
    apply_delete: HandlerFunc | None = None
    group: str | None = None
    parallel: bool = False

    def merge(self, other: "Handler", pattern: str) -> None:
        """Add ``other``'s handlers to this one; a handler registered twice is an error."""
        for field in dataclasses.fields(self):
            mine, theirs = getattr(self, field.name), getattr(other, field.name)
            if field.name in ("call", "auth"):
                twice = set(mine) & set(theirs)
                if twice:
                    raise ValueError(f"{field.name} method {sorted(twice)[0]!r} registered twice for {pattern!r}")
                mine.update(theirs)
            elif theirs not in (None, False):
                if mine not in (None, False) and mine != theirs:
                    raise ValueError(f"{field.name} registered twice for {pattern!r}")
                setattr(self, field.name, theirs)


def _check_method(method: str) -> None:
    if not method or "." in method or method in ("*", ">") or any(c.isspace() for c in method):
        raise ValueError(f"invalid method name {method!r}")


class Mux:
    """Handlers by resource pattern, below ``path``."""

    def __init__(self, path: str = "") -> None:
        if path:
            Pattern(path)
        self.path = path
        self._handlers: dict[str, Handler] = {}
        self._mounts: list[tuple[str, Mux]] = []
        self._frozen = False

    # --- registration

    def handle(self, pattern: str = "", handler: Handler | None = None, **fields: Any) -> Handler:
        """Register ``handler`` (or a Handler of ``fields``) for ``pattern`` below this Mux's path.

        Registering again for the same pattern adds to what is there.
        """
        if self._frozen:
            raise RuntimeError("handlers are registered before the service serves")
        handler = handler if handler is not None else Handler(**fields)
        if handler.kind is not None and handler.kind not in _KINDS:
            raise ValueError(f"kind is 'model' or 'collection', not {handler.kind!r}")
        if handler.group is not None:
            group_template(handler.group)
        for method in (*handler.call, *handler.auth):
            _check_method(method)
        full = join(self.path, pattern)
        parsed = Pattern(full)
        if parsed.has_wildcard and (handler.get or handler.call or handler.auth or handler.new):
            # A '>' pattern names no single resource to get or call; access is its use.
            raise ValueError(f"only access handlers take a '>' pattern, not {full!r}")
        existing = self._handlers.get(pattern)
        if existing is None:
            self._handlers[pattern] = handler
        else:
            existing.merge(handler, full)
        return self._handlers[pattern]

    def _decorator(self, pattern: str, slot: str, **fields: Any) -> Callable[[HandlerFunc], HandlerFunc]:
        def register(func: HandlerFunc) -> HandlerFunc:
            self.handle(pattern, **{slot: func}, **fields)
            return func

        return register

    def get(self, pattern: str = "", *, group: str | None = None) -> Callable[[HandlerFunc], HandlerFunc]:
        """Decorate a get handler that returns a ``Model`` or ``Collection`` (or a dict or list)."""
        return self._decorator(pattern, "get", group=group)

    def model(self, pattern: str = "", *, group: str | None = None) -> Callable[[HandlerFunc], HandlerFunc]:
        """Decorate a get handler of a model: it returns the properties (a dict or a ``Model``)."""
        return self._decorator(pattern, "get", kind="model", group=group)

    def collection(self, pattern: str = "", *, group: str | None = None) -> Callable[[HandlerFunc], HandlerFunc]:
        """Decorate a get handler of a collection: it returns the values (a list or a ``Collection``)."""
        return self._decorator(pattern, "get", kind="collection", group=group)

    def access(self, pattern: str = "", *, parallel: bool = False) -> Callable[[HandlerFunc], HandlerFunc]:
        """Decorate an access handler: it returns an ``Access`` (or a dict, or True for full access)."""
        return self._decorator(pattern, "access", parallel=parallel)

    def call(self, pattern: str, method: str, *, group: str | None = None) -> Callable[[HandlerFunc], HandlerFunc]:
        """Decorate a handler of call method ``method``: it returns the result (any JSON value)."""
        _check_method(method)

        def register(func: HandlerFunc) -> HandlerFunc:
            self.handle(pattern, call={method: func}, group=group)
            return func

        return register

    def auth(self, pattern: str, method: str, *, group: str | None = None) -> Callable[[HandlerFunc], HandlerFunc]:
        """Decorate a handler of auth method ``method``."""
        _check_method(method)

        def register(func: HandlerFunc) -> HandlerFunc:
            self.handle(pattern, auth={method: func}, group=group)
            return func

        return register

    def new(self, pattern: str = "", *, group: str | None = None) -> Callable[[HandlerFunc], HandlerFunc]:
        """Decorate a legacy ``new`` call handler: it returns the ``Ref`` of the new resource."""
        return self._decorator(pattern, "new", group=group)

    def route(self, path: str) -> "Mux":
        """A Mux for handlers below ``path``, mounted here."""
        sub = Mux()
        self.mount(path, sub)
        return sub

    def mount(self, path: str, mux: "Mux") -> None:
        """Serve ``mux``'s handlers below ``path`` (joined with ``mux``'s own path)."""
        if self._frozen:
            raise RuntimeError("handlers are registered before the service serves")
        if mux is self:
            raise ValueError("a Mux cannot be mounted on itself")
        self._mounts.append((path, mux))

    # --- lookup

    def routes(self, prefix: str = "") -> Iterator[tuple[str, Handler]]:
        """Every (full pattern, Handler), mounted ones included."""
        base = join(prefix, self.path)
        for pattern, handler in self._handlers.items():
            yield join(base, pattern), handler
        for path, mux in self._mounts:
            yield from mux.routes(join(base, path))

    def freeze(self) -> None:
        self._frozen = True
        for _, mux in self._mounts:
            mux.freeze()


def _rank(pattern: Pattern) -> tuple[int, ...]:
    """Lower is more specific: literal 0, ``$param`` 1, ``>`` 2, token by token."""
    return tuple(2 if t == ">" else 1 if t.startswith("$") else 0 for t in pattern.tokens)


def _shape(pattern: Pattern) -> str:
    return ".".join("$" if t.startswith("$") else t for t in pattern.tokens)


class Router:
    """The handlers of a Mux, compiled for lookups by resource name."""

    def __init__(self, mux: Mux) -> None:
        self.entries: list[tuple[tuple[int, ...], Pattern, Handler]] = []
        shapes: dict[str, Pattern] = {}
        merged: dict[str, Handler] = {}
        for text, handler in mux.routes():
            pattern = Pattern(text)
            seen = shapes.get(_shape(pattern))
            if seen is not None and seen.text != text:
                raise ValueError(f"patterns {seen.text!r} and {text!r} match the same resources")
            if text in merged:
                merged[text].merge(handler, text)
                continue
            shapes[_shape(pattern)] = pattern
            merged[text] = dataclasses.replace(handler, call=dict(handler.call), auth=dict(handler.auth))
            self.entries.append((_rank(pattern), pattern, merged[text]))
        self.entries.sort(key=lambda entry: entry[0])

    def lookup(self, rid: str) -> tuple[Pattern, Handler, dict[str, str]] | None:
        """The most specific (pattern, handler, path parameters) for resource name ``rid``."""
        for _, pattern, handler in self.entries:
            params = pattern.match(rid)
            if params is not None:
                return pattern, handler, params
        return None

    def lookup_for(self, rid: str, wanted: Callable[[Handler], Any]) -> tuple[Pattern, Handler, dict[str, str]] | None:
        """As ``lookup``, among the handlers for which ``wanted(handler)`` holds."""
        for _, pattern, handler in self.entries:
            if not wanted(handler):
                continue
            params = pattern.match(rid)
            if params is not None:
                return pattern, handler, params
        return None
