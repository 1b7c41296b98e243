"""A worker process of ``--workers N``: ``python -m resgate.workers``.

It reads its settings from stdin, runs one gateway on the supervisor's port
and logs JSON events on stdout (see ``resgate.workers``). This is the
package's ``__main__`` so that it runs as ``__main__`` only: nothing imports
it under its own name, and ``resgate.workers`` is loaded once, as a package.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from types import FrameType

from twisted.internet import main as internet_main
from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import globalLogBeginner, jsonFileLogObserver
from twisted.python.failure import Failure
from zope.interface import implementer

from resgate.config import ConfigError
from resgate.process import EXIT_FAILURE, ProcessExit, ReactorError, install_reactor, tune_gc
from resgate.service import GatewayService
from resgate.workers import READ_SIZE, READY_FIELD, log, read_settings, share_listening_port


@implementer(IReadDescriptor)
class _SupervisorWatch:
    """Reads the worker's stdin; its end of file means the supervisor is gone."""

    def __init__(self, fd: int, on_gone: Callable[[], None]) -> None:
        self.fd = fd
        self.on_gone = on_gone
        os.set_blocking(fd, False)

    def fileno(self) -> int:
        return self.fd

    def logPrefix(self) -> str:
        return "supervisor"

    def doRead(self) -> Failure | None:
        try:
            data = os.read(self.fd, READ_SIZE)
        except BlockingIOError:
            return None
        except OSError:
            # Twisted's stubs say Failure; its reactors take the exception itself.
            return internet_main.CONNECTION_LOST  # type: ignore[return-value]
        return None if data else internet_main.CONNECTION_DONE  # type: ignore[return-value]

    def connectionLost(self, reason: Failure) -> None:
        self.on_gone()


def main() -> None:
    """Run one worker until SIGTERM/SIGINT, the supervisor's end or a fatal error."""
    # A process group of its own: a Ctrl-C at the terminal reaches the
    # supervisor alone, which stops its workers in order.
    os.setpgrp()
    tune_gc()
    try:
        config = read_settings()
        reactor = install_reactor()
    except (ConfigError, ReactorError) as e:
        print(f"resgate worker: {e}", file=sys.stderr)
        raise SystemExit(EXIT_FAILURE) from None
    gateway = GatewayService(config, reactor=reactor)
    exit_status = ProcessExit(reactor)
    gateway.on_fatal = exit_status
    share_listening_port(gateway)
    globalLogBeginner.beginLoggingTo([jsonFileLogObserver(sys.stdout, recordSeparator="")],
                                     redirectStandardIO=False)
    shutting_down: list[bool] = []

    def stop(why: str) -> None:
        # A worker may be told twice (systemd signals the whole control group,
        # then the supervisor signals its workers); it stops once.
        if not shutting_down:
            log.info("{why}, shutting down", why=why)
            reactor.stop()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        reactor.callFromThread(stop, f"Received {signal.Signals(signum).name}")

    def serving(_: object) -> None:
        log.info("Worker serving", **{READY_FIELD: True})

    # The reactor's own handlers would stop it a second time on a second signal.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    reactor.addReader(_SupervisorWatch(0, lambda: stop("The supervising process is gone")))
    gateway.when_started().addCallbacks(serving, lambda _: None)
    reactor.callWhenRunning(gateway.startService)
    reactor.addSystemEventTrigger("before", "shutdown", shutting_down.append, True)
    reactor.addSystemEventTrigger("before", "shutdown", gateway.stopService)
    reactor.run(installSignalHandlers=False)
    sys.exit(exit_status.status)


if __name__ == "__main__":
    main()
