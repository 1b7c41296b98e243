"""Resource name patterns, as system.reset events name resources."""

from __future__ import annotations

from resgate import codec


class ResourcePattern:
    """A resource name pattern of a system.reset event: ``*`` a part, ``>`` the rest."""

    __slots__ = ("parts", "tail")

    def __init__(self, pattern: str) -> None:
        parts = pattern.split(".")
        self.tail = parts[-1] == ">"
        if self.tail:
            parts.pop()
        self.parts = parts

    @classmethod
    def parse(cls, pattern: str) -> ResourcePattern | None:
        """The pattern, or None when it is not a valid one (Resgate ignores those)."""
        parts = pattern.split(".")
        for i, part in enumerate(parts):
            if part in ("*", ">"):
                if part == ">" and i != len(parts) - 1:
                    return None
                continue
            if not codec.is_valid_rid_part(part):
                return None
        return cls(pattern)

    def match(self, name: str) -> bool:
        if not name:
            return False
        tokens = name.split(".")
        if len(tokens) < len(self.parts) + (1 if self.tail else 0):
            return False
        if not self.tail and len(tokens) != len(self.parts):
            return False
        return all(p == "*" or p == t for p, t in zip(self.parts, tokens))

