"""Log lines that whoever causes them cannot repeat at will: the first whole, the rest counted.

A service that is down, or a hostile client opening connection after
connection, would otherwise write one line per request or connection. A
``WindowedLog`` logs the first line of a kind whole and counts the others
of that kind for ``LOG_WINDOW`` seconds; at the window's end it logs one
line with the count and opens the next window, for as long as they go on.
A quiet window closes the kind: its next line is logged whole again.

With ``every_line`` (the gateway's ``--trace``) nothing is counted: every
line is logged, for whoever debugs what a client or service does.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

from twisted.internet.interfaces import IDelayedCall, IReactorTime

#: Seconds during which further lines of one kind are counted instead of logged.
LOG_WINDOW = 10.0

#: What tells one kind of line from another (a string, a tuple).
Kind = TypeVar("Kind", bound=Hashable)

#: A logger's method for one level, as ``Logger.warn``: a format and its fields.
Emit = Callable[..., None]


class _Window:
    """One kind's open window: the lines left out so far, and how to tell of them."""

    __slots__ = ("emit", "summary", "count", "seen", "timer")

    def __init__(self, emit: Emit, summary: str, seen: int, timer: IDelayedCall) -> None:
        self.emit = emit
        self.summary = summary
        #: Lines left out, to be told of at the window's end.
        self.count = 0
        #: Lines of the kind in this window, logged or left out.
        self.seen = seen
        self.timer = timer


class WindowedLog(Generic[Kind]):
    """Logs the first line of each kind, then counts that kind per window (see the module)."""

    def __init__(self, clock: IReactorTime, *, every_line: bool = False, window: float = LOG_WINDOW) -> None:
        self._clock = clock
        self.every_line = every_line
        self.window = window
        self._windows: dict[Kind, _Window] = {}

    def log(self, emit: Emit, kind: Kind, summary: str, format: str, **fields: Any) -> None:
        """Log ``format`` with ``fields`` through ``emit``, unless a line of ``kind`` was logged lately.

        ``summary`` names the kind in the count line (``<summary>: 12 more in
        the last 10 s``); it must not give away what only trace may show.
        """
        if self.every_line:
            emit(format, **fields)
            return
        window = self._windows.get(kind)
        if window is not None:
            window.count += 1
            window.seen += 1
            return
        emit(format, **fields)
        self._open(kind, emit, summary, 1)

    def open_windows(self) -> list[tuple[Kind, int]]:
        """(kind, lines in its window, logged or counted) of each window still open."""
        return [(kind, window.seen) for kind, window in self._windows.items()]

    def _open(self, kind: Kind, emit: Emit, summary: str, seen: int) -> None:
        self._windows[kind] = _Window(emit, summary, seen, self._clock.callLater(self.window, self._close, kind))

    def _close(self, kind: Kind) -> None:
        window = self._windows.pop(kind)
        if window.count:
            window.emit("{summary}: {count} more in the last {window:g} s",
                        summary=window.summary, count=window.count, window=self.window)
            self._open(kind, window.emit, window.summary, 0)

    def stop(self) -> None:
        """Cancel the open windows (their counts are not logged): the gateway is stopping."""
        for window in self._windows.values():
            if window.timer.active():
                window.timer.cancel()
        self._windows.clear()
