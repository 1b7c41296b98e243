"""Several gateway processes behind one listening port (``--workers N``).

One gateway process uses one core. With ``--workers N`` the process the
operator started (the ``resgate`` script or twistd) runs its own gateway and
supervises N-1 worker processes, each a complete gateway with its own NATS
connection and resource cache, as Resgate scales out: many gateways on one
NATS. All of them listen on the same address and port with ``SO_REUSEPORT``,
and the kernel spreads new connections over them. Linux only: elsewhere the
option either does not exist or does not balance.

A worker is ``python -m resgate.workers`` (``resgate/workers/__main__.py``). It takes its settings as one JSON
line on stdin (the supervisor's effective ``Config``, so secrets in a NATS URL
never appear on a command line or on disk) and then keeps reading stdin: the
supervisor holds the other end, so end of file means the supervisor is gone
and the worker stops rather than serve on as an orphan. A worker logs JSON
events on stdout; the supervisor publishes them to its own log with the
worker's number, levels kept, so there is one log whatever the log setup.

Workers start after the supervisor's own gateway listens (the actual port is
known then) and stop before it, SIGTERM first, SIGKILL after
``WORKER_STOP_TIMEOUT``. A worker that exits while the gateway runs is logged
and started again after a delay from ``RESTART_BACKOFF``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import sys
from typing import Any, TypedDict

from twisted.application.service import Service
from twisted.internet import defer, error, protocol
from twisted.logger import Logger, eventFromJSON
from twisted.python.failure import Failure

from resgate.backoff import jittered_backoff
from resgate.config import Config, ConfigError

log = Logger(namespace="resgate.workers")

#: ``SO_REUSEPORT`` spreads connections over the sockets sharing a port on Linux only.
SHARED_PORT_SUPPORTED = sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")
#: How long the supervisor waits for its workers to serve before it reports itself started.
WORKER_START_TIMEOUT = 30.0
#: How long a worker may take to stop after SIGTERM before it is killed.
WORKER_STOP_TIMEOUT = 10.0
#: The first wait before starting a worker that exited again (seconds), and the longest.
FIRST_RESTART_DELAY = 1.0
MAX_RESTART_DELAY = 30.0
RESTART_BACKOFF = jittered_backoff(FIRST_RESTART_DELAY, MAX_RESTART_DELAY)
#: A worker that ran this long before exiting is restarted after the first delay again.
STABLE_RUN = 60.0
#: The largest settings line a worker reads from its stdin.
MAX_SETTINGS_SIZE = 1024 * 1024
#: Bytes read from a pipe at a time.
READ_SIZE = 65536
#: Config fields a worker never takes from its supervisor.
class _SupervisorOnly(TypedDict):
    embed_nats: bool
    workers: int
    metrics_port: int


_SUPERVISOR_ONLY: _SupervisorOnly = {"embed_nats": False, "workers": 1, "metrics_port": 0}
#: The field of the log event by which a worker says it serves.
READY_FIELD = "resgate_worker_ready"


def share_listening_port(gateway) -> None:
    """Make ``gateway`` (not yet started) listen with ``SO_REUSEPORT``."""
    for listener in gateway.listeners:
        listener.reuse_port = True


def add_workers(gateway) -> WorkerSupervisor | None:
    """Give ``gateway`` (not yet started) its ``config.workers - 1`` worker processes.

    Returns the supervisor, a child service of the gateway started after its
    listener, or None for a single process. Raises ConfigError where ports
    cannot be shared.
    """
    count = gateway.config.workers
    if count <= 1:
        return None
    if not SHARED_PORT_SUPPORTED:
        raise ConfigError(f"--workers {count} needs Linux (SO_REUSEPORT); run one process per port")
    share_listening_port(gateway)
    supervisor = WorkerSupervisor(gateway, count)
    supervisor.setServiceParent(gateway)
    return supervisor


def worker_settings(config: Config, port: int) -> bytes:
    """The settings line a worker of a gateway with ``config``, listening on ``port``, reads.

    Metrics stay with the supervisor's process (one scrape target), and only
    the supervisor embeds NATS or starts workers. Workers of ``listen``
    endpoints listen on the same descriptions, whose ports are their own.
    """
    worker = dataclasses.replace(config, port=config.port if config.listen else port, **_SUPERVISOR_ONLY)
    fields = {f.name: getattr(worker, f.name) for f in dataclasses.fields(worker) if f.init}
    return json.dumps(fields).encode() + b"\n"


class WorkerProcess(protocol.ProcessProtocol):
    """One worker: relays its log to the supervisor's and reports when it serves and ends."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.pid: int | None = None
        self.started_at = 0.0
        self.serving = False
        self.exited: Failure | None = None
        self._ready_waiters: list[defer.Deferred] = []
        self._end_waiters: list[defer.Deferred] = []
        self._partial = {1: b"", 2: b""}
        self._prefix = f"[worker {number}] "

    def when_ready(self) -> defer.Deferred:
        """Fires with True once the worker serves, or False if it ended first."""
        if self.serving or self.exited is not None:
            return defer.succeed(self.serving)
        d: defer.Deferred = defer.Deferred()
        self._ready_waiters.append(d)
        return d

    def when_ended(self) -> defer.Deferred:
        """Fires once the worker process has exited."""
        if self.exited is not None:
            return defer.succeed(None)
        d: defer.Deferred = defer.Deferred()
        self._end_waiters.append(d)
        return d

    def signal(self, signum: int) -> None:
        # Workers are signalled only once spawnProcess has connected them.
        assert self.transport is not None
        try:
            self.transport.signalProcess(signum)
        except error.ProcessExitedAlready:
            pass

    def childDataReceived(self, fd: int, data: bytes) -> None:
        if fd not in self._partial:
            return
        lines = (self._partial[fd] + data).split(b"\n")
        self._partial[fd] = lines.pop()
        for line in lines:
            self._relay(fd, line)

    def _relay(self, fd: int, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace").rstrip()
        if not text:
            return
        event = None
        if fd == 1:
            try:
                event = eventFromJSON(text)
            except ValueError:
                pass
        if not isinstance(event, dict) or not isinstance(event.get("log_format"), str):
            # Not a log event: a worker's words outside its log (a traceback) are news.
            log.warn("{prefix}{line}", prefix=self._prefix, line=text)
            return
        if event.get(READY_FIELD):
            self._ready(True)
            return
        event["log_format"] = self._prefix + event["log_format"]
        event["resgate_worker"] = self.number
        # The worker's logger and source objects did not survive the trip.
        event.pop("log_logger", None)
        event.pop("log_source", None)
        log.observer(event)

    def _ready(self, serving: bool) -> None:
        self.serving = serving
        waiters, self._ready_waiters = self._ready_waiters, []
        for d in waiters:
            if not d.called:
                d.callback(serving)

    def processEnded(self, reason: Failure) -> None:
        for fd, rest in self._partial.items():
            if rest:
                self._relay(fd, rest)
        self.exited = reason
        self._ready(self.serving)
        waiters, self._end_waiters = self._end_waiters, []
        for d in waiters:
            if not d.called:
                d.callback(None)


def _describe_exit(reason: Failure) -> str:
    status = getattr(reason.value, "exitCode", None)
    signum = getattr(reason.value, "signal", None)
    if signum is not None:
        try:
            return f"was killed by {signal.Signals(signum).name}"
        except ValueError:
            return f"was killed by signal {signum}"
    return f"exited with status {status}"


class WorkerSupervisor(Service):
    """Runs workers 2..N of a gateway (the gateway's own process is worker 1).

    ``startService`` fires once every worker serves (or has failed, or
    WORKER_START_TIMEOUT passed: a worker that cannot start is logged and
    retried, it never stops the gateway that already serves).
    """

    name = "workers"

    def __init__(self, gateway, count: int, *, reactor=None, python: str = sys.executable) -> None:
        self.gateway = gateway
        self.count = count
        self.reactor = reactor if reactor is not None else gateway.reactor
        self.python = python
        self.workers: dict[int, WorkerProcess] = {}
        self._settings = b""
        self._restarts: dict[int, Any] = {}
        self._failures: dict[int, int] = {}

    def startService(self) -> defer.Deferred:
        super().startService()
        self._settings = worker_settings(self.gateway.config, self.gateway.port)
        for number in range(2, self.count + 1):
            self._spawn(number)
        started = defer.DeferredList([w.when_ready() for w in self.workers.values()],
                                     consumeErrors=True)
        started.addTimeout(WORKER_START_TIMEOUT, self.reactor)
        return started.addBoth(self._started)

    def _started(self, result) -> None:
        slow = sorted(n for n, w in self.workers.items() if not w.serving and w.exited is None)
        if slow:
            log.warn("Workers {numbers} not serving after {timeout:g}s; carrying on without them",
                     numbers=slow, timeout=WORKER_START_TIMEOUT)
        serving = sum(1 for w in self.workers.values() if w.serving) + 1
        log.info("{serving} of {count} processes serving", serving=serving, count=self.count)

    def _spawn(self, number: int) -> None:
        worker = WorkerProcess(number)
        self.workers[number] = worker
        args = [self.python, "-m", "resgate.workers"]
        transport = self.reactor.spawnProcess(worker, self.python, args, env=os.environ.copy(),
                                              childFDs={0: "w", 1: "r", 2: "r"})
        worker.pid = transport.pid
        worker.started_at = self.reactor.seconds()
        # The worker reads its settings first; the pipe then stays open, unwritten,
        # until this process ends.
        transport.write(self._settings)
        log.info("Started worker {number} of {count} (pid {pid})", number=number,
                 count=self.count, pid=worker.pid)
        worker.when_ended().addCallback(lambda _: self._ended(worker))

    def _ended(self, worker: WorkerProcess) -> None:
        if self.workers.get(worker.number) is not worker:
            return
        # when_ended fires only once processEnded has set exited.
        assert worker.exited is not None
        how = _describe_exit(worker.exited)
        if not self.running:
            log.info("Worker {number} (pid {pid}) stopped", number=worker.number, pid=worker.pid)
            return
        ran = self.reactor.seconds() - worker.started_at
        failures = 0 if ran >= STABLE_RUN else self._failures.get(worker.number, 0)
        self._failures[worker.number] = failures + 1
        delay = RESTART_BACKOFF(failures)
        # Whole seconds: the jitter's fractions are noise to an operator.
        log.error("Worker {number} (pid {pid}) {how}; starting it again in {delay:.0f}s",
                  number=worker.number, pid=worker.pid, how=how, delay=delay)
        self._restarts[worker.number] = self.reactor.callLater(delay, self._restart, worker.number)

    def _restart(self, number: int) -> None:
        self._restarts.pop(number, None)
        if self.running:
            self._spawn(number)

    def stopService(self) -> defer.Deferred:
        """Stop every worker: SIGTERM, then SIGKILL after WORKER_STOP_TIMEOUT."""
        super().stopService()
        for call in self._restarts.values():
            if call.active():
                call.cancel()
        self._restarts.clear()
        ends = []
        for worker in self.workers.values():
            if worker.exited is not None:
                continue
            worker.signal(signal.SIGTERM)
            kill = self.reactor.callLater(WORKER_STOP_TIMEOUT, self._kill, worker)
            ends.append(worker.when_ended().addBoth(_cancel, kill))
        return defer.DeferredList(ends).addCallback(lambda _: None)

    def _kill(self, worker: WorkerProcess) -> None:
        log.warn("Worker {number} (pid {pid}) still running {timeout:g}s after SIGTERM; killing it",
                 number=worker.number, pid=worker.pid, timeout=WORKER_STOP_TIMEOUT)
        worker.signal(signal.SIGKILL)


def _cancel(result, call):
    if call.active():
        call.cancel()
    return result


def read_settings(fd: int = 0) -> Config:
    """The Config of the settings line on ``fd``; raises ConfigError."""
    raw = b""
    while not raw.endswith(b"\n"):
        chunk = os.read(fd, READ_SIZE)
        if not chunk:
            raise ConfigError("no settings from the supervisor on stdin")
        raw += chunk
        if len(raw) > MAX_SETTINGS_SIZE:
            raise ConfigError(f"settings on stdin longer than {MAX_SETTINGS_SIZE} bytes")
    try:
        fields = json.loads(raw)
    except ValueError as e:
        raise ConfigError(f"settings on stdin are not JSON: {e}") from None
    if not isinstance(fields, dict):
        raise ConfigError("settings on stdin must be a JSON object")
    try:
        return Config(**fields)
    except TypeError as e:
        raise ConfigError(f"unknown setting from the supervisor: {e}") from None
