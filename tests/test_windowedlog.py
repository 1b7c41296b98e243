"""WindowedLog, the limiter behind the service-fault and client logs, on a fake clock.

Kinds are counted apart; the count line names a kind by its summary; a
quiet window ends the count; with ``every_line`` (trace) every line is
logged and no timer runs. ``tests/test_faulty_services.py`` and
``tests/test_logging.py`` check the lines the gateway logs through it.
"""

from __future__ import annotations

from twisted.internet import task

from resgate.windowedlog import LOG_WINDOW, WindowedLog


class Lines:
    """An ``emit`` that keeps the formatted lines."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def __call__(self, format: str, **fields) -> None:
        self.texts.append(format.format(**fields))

    def take(self) -> list[str]:
        taken, self.texts = self.texts, []
        return taken


def test_each_kind_is_logged_once_then_counted_apart_from_the_others():
    clock, lines = task.Clock(), Lines()
    log = WindowedLog(clock)
    for n in range(5):
        log.log(lines, "refused", "Refused connection", "Refused {peer}", peer=n)
    log.log(lines, "cut off", "Cut off", "Cut off {peer}", peer=9)
    assert lines.take() == ["Refused 0", "Cut off 9"]
    clock.advance(LOG_WINDOW)
    assert lines.take() == [f"Refused connection: 4 more in the last {LOG_WINDOW:g} s"]
    clock.advance(LOG_WINDOW)
    assert lines.take() == []
    assert not clock.getDelayedCalls()
    log.log(lines, "refused", "Refused connection", "Refused {peer}", peer=7)
    assert lines.take() == ["Refused 7"]
    log.stop()
    assert not clock.getDelayedCalls()


def test_every_line_logs_each_one_and_runs_no_timer():
    clock, lines = task.Clock(), Lines()
    log = WindowedLog(clock, every_line=True)
    for n in range(3):
        log.log(lines, "refused", "Refused connection", "Refused {peer}", peer=n)
    assert lines.take() == ["Refused 0", "Refused 1", "Refused 2"]
    assert not clock.getDelayedCalls()
