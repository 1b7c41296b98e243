"""The reactor the gateway installs: Twisted's asyncio reactor on uvloop."""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest_twisted
from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
from twisted.logger import globalLogPublisher

from resgate.process import GC_YOUNG_THRESHOLD
from tests.rig.aio import within

#: A child that closes its pipes first and exits a while later, so Twisted
#: cannot reap it when the pipes close and must learn of its exit by SIGCHLD.
LINGERING_CHILD = "import os, time; os.close(0); os.close(1); os.close(2); time.sleep(0.3)"


def test_install_reactor_picks_uvloop():
    script = ("from resgate.process import install_reactor; reactor = install_reactor(); "
              "print(type(reactor._asyncioEventloop).__module__)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert result.stdout.strip() == "uvloop", result.stderr


def test_the_gateways_own_reactor_calls_sockets_without_a_log_context():
    """A reactor the gateway installs skips callWithLogger; one installed before it keeps it."""
    check = ("from twisted.internet import asyncioreactor; from twisted.python import log; "
             "print(asyncioreactor.callWithLogger is log.callWithLogger)")
    own = subprocess.run([sys.executable, "-c", "from resgate.process import install_reactor; install_reactor(); "
                          + check], capture_output=True, text=True, timeout=30)
    assert own.stdout.strip() == "False", own.stderr
    given = subprocess.run([sys.executable, "-c", "from twisted.internet import asyncioreactor; "
                            "asyncioreactor.install(); from resgate.process import install_reactor; "
                            "install_reactor(); " + check], capture_output=True, text=True, timeout=30)
    assert given.stdout.strip() == "True", given.stderr


class Raising(protocol.Protocol):
    def dataReceived(self, data: bytes) -> None:
        raise RuntimeError("a reader's bug")


class Closing(protocol.Protocol):
    def __init__(self) -> None:
        self.closed: defer.Deferred = defer.Deferred()

    def connectionLost(self, reason=None) -> None:
        self.closed.callback(None)


@pytest_twisted.ensureDeferred
async def test_what_a_reader_raises_is_still_logged_and_ends_its_connection():
    # The tests run on the gateway's reactor: no log context around the reader.
    failures: list = []

    def observe(event: dict) -> None:
        if event.get("log_failure") is not None:
            failures.append(event["log_failure"])

    port = await within(TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        protocol.Factory.forProtocol(Raising)))
    globalLogPublisher.addObserver(observe)
    try:
        client = await within(connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port),
                                              Closing()))
        client.transport.write(b"x")
        await within(client.closed, 10)
    finally:
        globalLogPublisher.removeObserver(observe)
        await port.stopListening()
    assert [str(failure.value) for failure in failures] == ["a reader's bug"]


class Ended(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.ended: defer.Deferred = defer.Deferred()

    def processEnded(self, reason) -> None:
        self.ended.callback(reason.value.exitCode)


@pytest_twisted.ensureDeferred
async def test_a_child_that_exits_after_closing_its_pipes_is_reaped():
    # The tests run on the gateway's reactor (conftest installs it).
    assert type(reactor._asyncioEventloop).__module__ == "uvloop"
    child = Ended()
    reactor.spawnProcess(child, sys.executable, [sys.executable, "-c", LINGERING_CHILD])
    assert await within(child.ended, 10) == 0


def test_gateway_processes_collect_garbage_less_often():
    script = ("import gc; from resgate.options import Options; from resgate.process import build_gateway; "
              "options = Options(); options.parseOptions(['--nats', 'nats://127.0.0.1:1']); "
              "build_gateway(options); print(gc.get_threshold()[0])")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert result.stdout.strip() == str(GC_YOUNG_THRESHOLD), result.stderr


def test_gateway_processes_raise_their_open_file_limit_to_the_hard_one():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = min(256, hard)
    script = ("import resource; from resgate.options import Options; from resgate.process import build_gateway; "
              "options = Options(); options.parseOptions(['--nats', 'nats://127.0.0.1:1']); "
              "build_gateway(options); print(*resource.getrlimit(resource.RLIMIT_NOFILE))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30,
                            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard)))
    assert result.stdout.split() == [str(hard), str(hard)], result.stderr
