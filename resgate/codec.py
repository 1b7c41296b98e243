"""Validation of the names clients and services send: resource IDs and methods.

The rules are Resgate's (``server/codec``): a resource ID is one or more
dot-separated parts of printable ASCII without ``*``, ``>`` or ``?``,
because the parts become NATS subject tokens. A query, when allowed, starts
at the first ``?`` after a complete part and may hold anything.
"""

from __future__ import annotations

import re

# Printable ASCII (33..126) except the NATS wildcards, the token separator and
# the query mark; everything else, including non-ASCII, is rejected.
_PART = r"[^\x00-\x20\x7f-\U0010ffff.*>?]+"

_RID_PART = re.compile(_PART)
_RID = re.compile(rf"{_PART}(?:\.{_PART})*")
_RID_WITH_QUERY = re.compile(rf"{_PART}(?:\.{_PART})*(?:\?.*)?", re.DOTALL)


def is_valid_rid(rid: str, allow_query: bool) -> bool:
    """Whether ``rid`` is a resource ID, optionally followed by ``?query``.

    Used on every request and reference, so it is a single precompiled match.
    """
    pattern = _RID_WITH_QUERY if allow_query else _RID
    return pattern.fullmatch(rid) is not None


def is_valid_rid_part(part: str) -> bool:
    """Whether ``part`` can be one dot-free token of a resource ID.

    Method names (call, auth) and the HTTP method mappings must be one part.
    """
    return _RID_PART.fullmatch(part) is not None
