"""How trace logs (``--trace``) show a payload: on one line, whatever it holds."""

from __future__ import annotations

_ONE_LINE = str.maketrans({"\n": "\\n", "\r": "\\r"})


def one_line(payload: bytes) -> str:
    """``payload`` as text for a trace line: undecodable bytes replaced, line breaks escaped."""
    return payload.decode("utf-8", "replace").translate(_ONE_LINE)
