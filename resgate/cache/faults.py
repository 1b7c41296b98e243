"""The log of services' faults: requests that timed out or got a broken response."""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from resgate import errors
from resgate.windowedlog import WindowedLog

# The cache's namespace: operators filter these lines by it.
log = Logger(namespace="resgate.cache")

#: How many characters of a service's message a log line quotes at most.
LOG_EXCERPT = 200


def excerpt(text: object) -> str:
    """``text`` (bytes shown as their repr) cut short for one log line."""
    if isinstance(text, bytes):
        shown = repr(text[:LOG_EXCERPT])
        if len(text) > LOG_EXCERPT or len(shown) > LOG_EXCERPT:
            return f"{shown[:LOG_EXCERPT]}... ({len(text)} bytes)"
        return shown
    text = str(text)
    if len(text) > LOG_EXCERPT:
        return f"{text[:LOG_EXCERPT]}... ({len(text)} characters)"
    return text


class FaultLog:
    """Warnings for a service's faults: no answer in time, or a broken one.

    Warnings: Resgate logs neither (the requester gets the error), but an
    operator needs to know which service misbehaves. A service's own error
    response is no fault of it and is not logged. A service that is down
    times out every request made to it, a line per request with many
    clients; so the first fault of a kind for a request type and service
    (``get.library``) is logged whole, and the next ones are counted for
    ``windowedlog.LOG_WINDOW`` seconds and told in one line at its end, window
    after window while they go on.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._lines: WindowedLog[tuple[str, str]] = WindowedLog(clock)
        #: Faults so far, logged or counted.
        self.total = 0

    def fault(self, subject: str, error: errors.ResError) -> None:
        # errors.TIMEOUT itself is mq's timeout; a service's system.timeout response is another object.
        if error is errors.TIMEOUT:
            message, reason = "Request timeout on", ""
        elif isinstance(error, errors.InvalidResponse):
            message, reason = "Invalid response to", excerpt(error.reason)
        else:
            return
        self.total += 1
        request_type, _, name = subject.partition(".")
        prefix = f"{request_type}.{name.partition('.')[0]}"
        kind, summary = (message, prefix), f"{message} {prefix}.*"
        if reason:
            self._lines.log(log.warn, kind, summary, "{message} {subject}: {reason}",
                            message=message, subject=subject, reason=reason)
        else:
            self._lines.log(log.warn, kind, summary, "{message} {subject}", message=message, subject=subject)

    def open_windows(self) -> list[tuple[str, str, int]]:
        """(message, subject prefix, faults) of each window still open: the faults of the last moments."""
        return [(message, prefix, seen) for (message, prefix), seen in self._lines.open_windows()]

    def stop(self) -> None:
        self._lines.stop()
