"""The resource model: models, collections and the events that change them.

The cache holds one Model or Collection per resource and replaces it on
every change, so a copy a connection holds never changes under it; each
encodes its JSON once for every client.
"""

from __future__ import annotations

from typing import Any, Iterable

import orjson

from resgate import codec
from resgate.codec import Value

#: A cached resource's type (``CachedResource.resource_type``).
TYPE_COLLECTION = 3
TYPE_MODEL = 4


def _reference_rids(values: Iterable[Value]) -> tuple[str, ...]:
    # A reference always has a rid; the second test only tells mypy so. A
    # tuple of strings, unlike a list, leaves the cyclic GC's tracking once
    # it was walked, and most resources keep the empty one.
    return tuple([value.rid for value in values if value.type == codec.VALUE_REFERENCE and value.rid is not None])


class Model:
    """A model's values; its JSON is encoded once and shared by every client."""

    __slots__ = ("values", "_json", "_legacy_json", "_references", "_reference_rids")

    def __init__(self, values: dict[str, Value]) -> None:
        self.values = values
        self._json: orjson.Fragment | None = None
        self._legacy_json: orjson.Fragment | None = None
        self._references: dict[str, None] | None = None
        self._reference_rids: tuple[str, ...] | None = None

    def references(self) -> dict[str, None]:
        """The resource IDs this model references (non-soft), as an ordered set."""
        if self._references is None:
            self._references = dict.fromkeys(self.reference_rids())
        return self._references

    def reference_rids(self) -> tuple[str, ...]:
        """The resource ID of each reference value (non-soft), in order, repeats included.

        What every subscriber of the model subscribes to; most models have none.
        """
        if self._reference_rids is None:
            self._reference_rids = _reference_rids(self.values.values())
        return self._reference_rids

    def json(self) -> orjson.Fragment:
        if self._json is None:
            self._json = orjson.Fragment(orjson.dumps({k: v.raw for k, v in self.values.items()}))
        return self._json

    def legacy_json(self) -> orjson.Fragment:
        """The model as a client of protocol 1.2.0 or older sees it."""
        if self._legacy_json is None:
            self._legacy_json = orjson.Fragment(
                orjson.dumps({k: v.legacy() for k, v in self.values.items()})
            )
        return self._legacy_json


class Collection:
    """A collection's values; its JSON is encoded once and shared by every client."""

    __slots__ = ("values", "_json", "_legacy_json", "_references", "_reference_rids")

    def __init__(self, values: list[Value]) -> None:
        self.values = values
        self._json: orjson.Fragment | None = None
        self._legacy_json: orjson.Fragment | None = None
        self._references: dict[str, None] | None = None
        self._reference_rids: tuple[str, ...] | None = None

    def references(self) -> dict[str, None]:
        """The resource IDs this collection references (non-soft), as an ordered set."""
        if self._references is None:
            self._references = dict.fromkeys(self.reference_rids())
        return self._references

    def reference_rids(self) -> tuple[str, ...]:
        """The resource ID of each reference value (non-soft), in order, repeats included."""
        if self._reference_rids is None:
            self._reference_rids = _reference_rids(self.values)
        return self._reference_rids

    def json(self) -> orjson.Fragment:
        if self._json is None:
            self._json = orjson.Fragment(orjson.dumps([v.raw for v in self.values]))
        return self._json

    def legacy_json(self) -> orjson.Fragment:
        if self._legacy_json is None:
            self._legacy_json = orjson.Fragment(orjson.dumps([v.legacy() for v in self.values]))
        return self._legacy_json


class ResourceEvent:
    """An event as the cache applied it, for subscribers to pass on.

    ``version`` is the resource version the event applies to; ``update``
    says it changed the resource (change/add/remove), so subscribers that
    hold an older or newer copy know to skip it.
    """

    __slots__ = ("event", "payload", "idx", "value", "changed", "old_values", "references", "version",
                 "update", "model", "collection", "messages")

    def __init__(self, event: str, payload: Any = None) -> None:
        self.event = event
        self.payload = payload
        self.idx = 0
        self.value: Value | None = None
        self.changed: dict[str, Value] | None = None
        self.old_values: dict[str, Value] | None = None
        #: A change that sets or replaces a reference: each subscriber has
        #: references to add or drop. Without one, every subscriber's part is
        #: the same send, and none of them walks the values.
        self.references = False
        self.version = 0
        self.update = False
        #: The resource as this event left it (updates only).
        self.model: Model | None = None
        self.collection: Collection | None = None
        #: The client message of this event, encoded once for every subscriber
        #: that sends the same bytes (see Subscription._send_shared).
        self.messages: dict[Any, Any] | None = None



def collection_diff(a: list[Value], b: list[Value]) -> list[ResourceEvent]:
    """remove and add events turning ``a`` into ``b`` (longest common subsequence)."""
    start = 0
    while start < len(a) and start < len(b) and a[start] == b[start]:
        start += 1
    end_a, end_b = len(a), len(b)
    while end_a > start and end_b > start and a[end_a - 1] == b[end_b - 1]:
        end_a -= 1
        end_b -= 1
    aa, bb = a[start:end_a], b[start:end_b]
    m, n = len(aa), len(bb)
    if m == 0 and n == 0:
        return []
    # lengths[i][j]: LCS length of aa[:i] and bb[:j]
    lengths = [[0] * (n + 1) for _ in range(m + 1)]
    for i in range(m):
        for j in range(n):
            if aa[i] == bb[j]:
                lengths[i + 1][j + 1] = lengths[i][j] + 1
            else:
                lengths[i + 1][j + 1] = max(lengths[i + 1][j], lengths[i][j + 1])
    keep_a: set[int] = set()
    keep_b: set[int] = set()
    i, j = m, n
    while i > 0 and j > 0:
        if aa[i - 1] == bb[j - 1]:
            keep_a.add(i - 1)
            keep_b.add(j - 1)
            i -= 1
            j -= 1
        elif lengths[i - 1][j] >= lengths[i][j - 1]:
            i -= 1
        else:
            j -= 1
    events: list[ResourceEvent] = []
    # Remove from the end first so earlier indexes stay valid.
    for i in range(m - 1, -1, -1):
        if i not in keep_a:
            events.append(ResourceEvent("remove", {"idx": start + i}))
    # After the removals the kept items sit in order; insert the new ones.
    for j in range(n):
        if j not in keep_b:
            events.append(ResourceEvent("add", {"idx": start + j, "value": bb[j].raw}))
    return events

