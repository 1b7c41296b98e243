"""Resource patterns: resource names with ``$param`` tokens and a last ``>`` token.

``library.book.$id`` matches ``library.book.42`` with ``{"id": "42"}``;
``library.>`` matches every resource below ``library``.
"""

from __future__ import annotations

import re

#: Tokens of a resource name may not hold these: they are NATS's own.
_FORBIDDEN = re.compile(r"[\s*>$?]")
_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_GROUP_PARAM = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def join(prefix: str, pattern: str) -> str:
    """``prefix.pattern``, either side possibly empty."""
    return ".".join(part for part in (prefix, pattern) if part)


def valid_rid(rid: str) -> bool:
    """Whether ``rid`` (a resource name, without query) can be a NATS subject part."""
    return bool(rid) and all(token and not _FORBIDDEN.search(token) for token in rid.split("."))


class Pattern:
    """A parsed resource pattern."""

    def __init__(self, pattern: str) -> None:
        tokens = pattern.split(".") if pattern else []
        if not tokens:
            raise ValueError("a resource pattern must not be empty")
        for i, token in enumerate(tokens):
            if token == ">":
                if i != len(tokens) - 1:
                    raise ValueError(f"'>' must be the last token of {pattern!r}")
            elif token.startswith("$"):
                if not _PARAM.fullmatch(token):
                    raise ValueError(f"invalid parameter {token!r} in {pattern!r}")
            elif not token or _FORBIDDEN.search(token):
                raise ValueError(f"invalid token {token!r} in resource pattern {pattern!r}")
        names = [t[1:] for t in tokens if t.startswith("$")]
        if len(set(names)) != len(names):
            raise ValueError(f"a parameter name appears twice in {pattern!r}")
        self.text = pattern
        self.tokens = tokens

    @property
    def subject(self) -> str:
        """The NATS subject of the pattern: ``$param`` tokens as ``*``."""
        return ".".join("*" if t.startswith("$") else t for t in self.tokens)

    @property
    def has_wildcard(self) -> bool:
        return self.tokens[-1] == ">"

    def match(self, rid: str) -> dict[str, str] | None:
        """The path parameters of ``rid``, or None when it does not match."""
        parts = rid.split(".")
        params: dict[str, str] = {}
        for i, token in enumerate(self.tokens):
            if token == ">":
                return params if len(parts) > i else None
            if i >= len(parts):
                return None
            if token.startswith("$"):
                params[token[1:]] = parts[i]
            elif token != parts[i]:
                return None
        return params if len(parts) == len(self.tokens) else None

    def __repr__(self) -> str:
        return f"Pattern({self.text!r})"


def subject_covers(wide: str, narrow: str) -> bool:
    """Whether every subject that ``narrow`` (``*``, ``>``) receives, ``wide`` receives too."""
    wt, nt = wide.split("."), narrow.split(".")
    for i, token in enumerate(wt):
        if token == ">":
            return len(nt) > i
        if i >= len(nt) or nt[i] == ">" or (token != "*" and token != nt[i]):
            return False
    return len(wt) == len(nt)


def group_template(template: str) -> None:
    """Check a worker group template (``library.${id}``); ValueError when malformed."""
    if "$" in _GROUP_PARAM.sub("", template):
        raise ValueError(f"invalid worker group {template!r}: parameters are written ${{name}}")


def expand_group(template: str, params: dict[str, str]) -> str:
    """The worker group of a request: ``${name}`` replaced by its path parameter."""
    return _GROUP_PARAM.sub(lambda m: params.get(m.group(1), ""), template)
