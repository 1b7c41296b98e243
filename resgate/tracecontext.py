"""W3C trace context (``traceparent``, ``tracestate``) a client sends, checked before it is forwarded.

A client's trace context reaches services as NATS message headers (see
docs/operations.md, "Tracing"). What a client sends is checked against the
W3C Trace Context recommendation first: a malformed ``traceparent`` is
dropped, never forwarded, and ``tracestate`` goes only with a valid one,
bounded as the recommendation suggests (32 list members, 512 characters).
"""

from __future__ import annotations

import re

#: The W3C recommendation's bounds of a ``tracestate`` a vendor must propagate.
MAX_TRACESTATE_MEMBERS = 32
MAX_TRACESTATE_LENGTH = 512
#: A ``traceparent`` of a later version may be longer than version 00's 55
#: characters; anything past this is refused unread.
MAX_TRACEPARENT_LENGTH = 512

#: version-traceid-parentid-flags, lower-case hex; the prefix a version after 00 keeps.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE_ID = "0" * 32
_ZERO_SPAN_ID = "0" * 16
_KEY_CHARS = r"[a-z0-9_\-*/]"
_TRACESTATE_MEMBER = re.compile(
    rf"[ \t]*((?:[a-z]{_KEY_CHARS}{{0,255}})|(?:[a-z0-9]{_KEY_CHARS}{{0,240}}@[a-z]{_KEY_CHARS}{{0,13}}))"
    r"=([\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e])[ \t]*"
)


def valid_traceparent(values: list[str] | None) -> str | None:
    """The ``traceparent`` to forward, from the header's values; None when it is not valid.

    Version 00 is forwarded as it came. A later version (not ff) is read as
    the recommendation says, by its version 00 prefix, and forwarded as
    version 00: that is the format the gateway knows.
    """
    if values is None or len(values) != 1:
        return None
    value = values[0]
    if len(value) > MAX_TRACEPARENT_LENGTH:
        return None
    parts = _TRACEPARENT.match(value)
    if parts is None:
        return None
    version, trace_id, span_id, flags = parts.groups()
    if version == "ff" or trace_id == _ZERO_TRACE_ID or span_id == _ZERO_SPAN_ID:
        return None
    if version == "00":
        return value if len(value) == 55 else None
    if len(value) > 55 and value[55] != "-":
        return None
    return f"00-{trace_id}-{span_id}-{flags}"


def valid_tracestate(values: list[str] | None) -> str | None:
    """The ``tracestate`` to forward (its members, comma-separated); None when absent or not valid.

    Several header lines make one list, as HTTP combines them. A list that
    is malformed, holds a key twice, or is past the recommendation's
    bounds is dropped whole rather than cut: which members a vendor may
    drop is the vendor's to say.
    """
    if not values:
        return None
    members = []
    keys = set()
    for value in values:
        for member in value.split(","):
            if not member.strip(" \t"):
                continue  # the recommendation allows empty list members
            parsed = _TRACESTATE_MEMBER.fullmatch(member)
            if parsed is None or parsed[1] in keys:
                return None
            keys.add(parsed[1])
            members.append(f"{parsed[1]}={parsed[2]}")
            if len(members) > MAX_TRACESTATE_MEMBERS:
                return None
    joined = ",".join(members)
    return joined if members and len(joined) <= MAX_TRACESTATE_LENGTH else None


def trace_headers(traceparent: list[str] | None, tracestate: list[str] | None) -> dict[str, str] | None:
    """The NATS headers that carry a client's trace context; None when it sent no valid one."""
    parent = valid_traceparent(traceparent)
    if parent is None:
        return None
    state = valid_tracestate(tracestate)
    return {"traceparent": parent} if state is None else {"traceparent": parent, "tracestate": state}
