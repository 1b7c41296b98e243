"""The errors the gateway logs, as a test sees them; and every line, for tests of logging itself.

``ErrorLog`` is a ``globalLogPublisher`` observer that keeps the error and
critical log events of the gateway's loggers (namespaces ``resgate*``), the
way Resgate's suite counts them with its CountLogger. The ``logged_errors``
fixture in ``conftest.py`` installs one for a test and fails the test at
teardown if it logged errors the test did not count. ``GatewayLines``
(fixture ``gateway_lines``) keeps every line the gateway side logs, its own
loggers' and Autobahn's, for tests that count lines.
"""

from __future__ import annotations

from twisted.logger import LogLevel, formatEvent

from tests.rig.aio import eventually, sleep


class ErrorLog:
    """Error (and worse) log events of the gateway's loggers (``resgate.*``)."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def __call__(self, event: dict) -> None:
        level = event.get("log_level")
        namespace = str(event.get("log_namespace", ""))
        if level in (LogLevel.error, LogLevel.critical) and namespace.startswith("resgate"):
            self.messages.append(formatEvent(event))

    def assert_logged(self, count: int) -> None:
        """Exactly ``count`` errors were logged since the last check (no waiting); forgets them."""
        found, self.messages = self.messages, []
        assert len(found) == count, f"expected {count} logged error(s), got {found}"

    async def expect(self, count: int) -> None:
        """Wait (bounded) for ``count`` errors, check no more come soon, then forget them."""
        await eventually(lambda: len(self.messages) >= count)
        await sleep(0.1)
        self.assert_logged(count)


class FailureLog:
    """Error (and worse) log events of any logger, and every logged failure.

    Hostile input that makes Autobahn or twisted.web raise shows up here
    even though it never reaches the gateway's own loggers.
    """

    def __init__(self) -> None:
        self.messages: list[str] = []

    def __call__(self, event: dict) -> None:
        if event.get("log_failure") is not None or event.get("log_level") in (LogLevel.error, LogLevel.critical):
            self.messages.append(formatEvent(event))


class GatewayLines:
    """Every log event of the gateway's loggers and Autobahn's, as text.

    The test's own clients log through Twisted's endpoints and Autobahn's
    client protocol; their lines are left out.
    """

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, event: dict) -> None:
        namespace = str(event.get("log_namespace", ""))
        if namespace.startswith(("resgate", "autobahn.twisted.websocket.WebSocketServerProtocol")):
            self.lines.append(formatEvent(event))

    def containing(self, text: str) -> list[str]:
        return [line for line in self.lines if text in line]
