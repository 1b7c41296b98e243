"""What the gateway reads in a Twisted endpoint description before Twisted parses it.

Twisted's syntax: parameters separated by ``:``, a keyword one is
``key=value``, and ``\\`` escapes the next character. The gateway adds one
parameter, ``minTLS=1.2|1.3`` on ``ssl:`` endpoints (also under ``haproxy:``),
the lowest TLS version accepted: Twisted's ``ssl:`` has none. It is taken out
of the description before Twisted sees it. ``--workers`` also needs the port
of a ``tcp:`` or ``ssl:`` description, to refuse port 0, and a description
that names no ``backlog=`` gets the gateway's (Twisted's default is 50).

Errors are ValueErrors saying what is wrong; callers name the description.
"""

from __future__ import annotations

from typing import NamedTuple

#: The gateway's parameter of ``ssl:`` descriptions: the lowest TLS version accepted.
TLS_MINIMUM_KEY = "minTLS"
#: The values it takes. Twisted accepts TLS 1.2 and above by default; lowering it is not offered.
TLS_MINIMUM_VERSIONS = ("1.2", "1.3")
#: Endpoint kinds whose first positional parameter, or ``port=``, is a TCP port.
TCP_PORT_KINDS = ("tcp", "ssl")
#: Endpoint kinds with a listen queue (``backlog=``).
BACKLOG_KINDS = ("tcp", "ssl", "unix")


class Parameter(NamedTuple):
    """One ``:``-separated part of a description, as written (``raw``) and as Twisted reads it."""

    raw: str
    #: The keyword, or None for a positional parameter.
    key: str | None
    value: str


def parameters(description: str) -> list[Parameter]:
    """The parts of a description, split as Twisted splits them (an escaped ``:`` splits nothing)."""
    found = []
    raw, key, value = "", None, ""
    characters = iter(description)
    for character in characters:
        if character == ":":
            found.append(Parameter(raw, key, value))
            raw, key, value = "", None, ""
            continue
        raw += character
        if character == "\\":
            escaped = next(characters, "")
            raw += escaped
            value += escaped
        elif character == "=" and key is None:
            key, value = value, ""
        else:
            value += character
    found.append(Parameter(raw, key, value))
    return found


def endpoint_kind(description: str) -> str:
    """The endpoint type of a Twisted server description, under any ``haproxy:`` wrappers."""
    kind, _, rest = description.partition(":")
    while kind == "haproxy":
        kind, _, rest = rest.partition(":")
    return kind


def without_tls_minimum(description: str) -> tuple[str, str | None]:
    """The description without its ``minTLS=`` parameter, and that parameter's version (or None).

    Raises ValueError for a version other than 1.2 or 1.3, for the
    parameter given twice, on an endpoint other than ``ssl:``, or with
    ``sslmethod=`` (which pins the versions itself).
    """
    parts = parameters(description)
    minimums = [part.value for part in parts if part.key == TLS_MINIMUM_KEY]
    if not minimums:
        return description, None
    if len(minimums) > 1:
        raise ValueError(f"{TLS_MINIMUM_KEY} is given {len(minimums)} times")
    (minimum,) = minimums
    if minimum not in TLS_MINIMUM_VERSIONS:
        raise ValueError(f"{TLS_MINIMUM_KEY} must be {' or '.join(TLS_MINIMUM_VERSIONS)}, not {minimum!r}")
    if endpoint_kind(description) != "ssl":
        raise ValueError(f"{TLS_MINIMUM_KEY} applies to ssl: endpoints only")
    if any(part.key == "sslmethod" for part in parts):
        raise ValueError(f"{TLS_MINIMUM_KEY} cannot be combined with sslmethod, which pins the TLS version")
    return ":".join(part.raw for part in parts if part.key != TLS_MINIMUM_KEY), minimum


def keyword_value(description: str, key: str) -> str | None:
    """The value of the last ``key=`` parameter of a description (Twisted's reading), or None."""
    values = [part.value for part in parameters(description) if part.key == key]
    return values[-1] if values else None


def tcp_port(description: str) -> int | None:
    """The port a ``tcp:`` or ``ssl:`` description (also under ``haproxy:``) names, or None.

    None too for a port that is no integer: Twisted's parser says why.
    """
    parts = parameters(description)
    while parts and parts[0].raw == "haproxy":
        parts = parts[1:]
    if not parts or parts[0].raw not in TCP_PORT_KINDS:
        return None
    positional = [part.value for part in parts[1:] if part.key is None]
    named = [part.value for part in parts[1:] if part.key == "port"]
    port = (named or positional or [""])[0]
    try:
        return int(port)
    except ValueError:
        return None


def with_backlog(description: str, backlog: int) -> str:
    """The description with ``backlog=`` added where it has a listen queue and names none.

    Only where the port or path is its one positional parameter: Twisted
    reads further positional ones as the interface, backlog or mode.
    """
    parts = parameters(description)
    while parts and parts[0].raw == "haproxy":
        parts = parts[1:]
    if not parts or parts[0].raw not in BACKLOG_KINDS or any(part.key == "backlog" for part in parts):
        return description
    if sum(part.key is None for part in parts[1:]) > 1:
        return description
    return f"{description}:backlog={backlog}"
