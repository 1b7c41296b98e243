"""A gateway process: its reactor, its exit status, its garbage collector.

What the ``resgate`` script, twistd's plugin and each ``--workers`` child
share before they run a gateway: Twisted's asyncio reactor on uvloop, child
reaping under uvloop, an exit status for a fatal failure, and the collector
and open-file settings a gateway process wants. Kept apart from ``resgate.tap`` so that the
workers' entry point can use it without importing the twistd plugin.
"""

from __future__ import annotations

import asyncio
import gc
import os
import resource
import signal
import sys
from types import FrameType
from typing import Any

from resgate.config import ConfigError
from resgate.internals import call_selectables_without_log_context
from resgate.options import Options, config_from_options
from resgate.service import GatewayService
from resgate.workers import add_workers

#: Exit status of a process whose gateway failed (Resgate exits with 1).
EXIT_FAILURE = 1

#: Allocations between two collections of the youngest generation (Python's
#: default is 700). A gateway holds many long-lived objects per client, and
#: each full collection walks them all: with 5,000 clients, one landing in
#: the middle of an event's fan-out doubled the time to reach them all
#: (bench idle_5000: 242-346 ms at 700, 139-177 ms at 20,000).
GC_YOUNG_THRESHOLD = 20_000


class ReactorError(Exception):
    """The installed reactor cannot run the gateway."""


def _reap_children_on_sigchld(reactor: Any) -> None:
    """Let child processes (embedded nats-server, workers) be reaped under uvloop.

    Twisted learns that a child exited from a SIGCHLD written to the signal
    wakeup fd, but uvloop takes that fd over while it runs. Python-level
    handlers still run, so SIGCHLD gets one that asks the reactor to reap.
    Only where the reactor installed its own SIGCHLD handling (run with
    signal handlers, on POSIX).
    """
    from twisted.internet import process

    if signal.getsignal(signal.SIGCHLD) in (signal.SIG_DFL, signal.SIG_IGN, None):
        return

    def on_sigchld(signum: int, frame: FrameType | None) -> None:
        reactor.callFromThread(process.reapAllProcesses)

    signal.signal(signal.SIGCHLD, on_sigchld)
    signal.siginterrupt(signal.SIGCHLD, False)
    process.reapAllProcesses()  # any that exited before the handler was set


def install_reactor() -> Any:
    """Install Twisted's asyncio reactor unless one is installed; return it.

    nats-py runs on asyncio, so the gateway needs the asyncio reactor. twistd
    installs its default reactor only after makeService, which leaves room to
    install this one; an explicit ``--reactor`` of another kind is refused.
    The loop is uvloop's where it is installed (Linux, macOS): the gateway
    answers 10-40% more per second on it (bench/README.md). The reactor it
    installs calls sockets without a log context per event; a reactor
    installed before it is left as it is.
    """
    if "twisted.internet.reactor" not in sys.modules:
        from twisted.internet import asyncioreactor

        loop: asyncio.AbstractEventLoop
        try:
            import uvloop
        except ImportError:
            on_uvloop = False
            loop = asyncio.new_event_loop()
        else:
            on_uvloop = True
            loop = uvloop.new_event_loop()
        asyncio.set_event_loop(loop)
        # The gateway's own reactor: no log context per socket event (a reactor it was given keeps its own).
        call_selectables_without_log_context()
        asyncioreactor.install(loop)
        if on_uvloop:
            from twisted.internet import reactor

            reactor.addSystemEventTrigger("after", "startup", _reap_children_on_sigchld, reactor)
    from twisted.internet import reactor
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor

    if not isinstance(reactor, AsyncioSelectorReactor):
        raise ReactorError(
            f"resgate needs Twisted's asyncio reactor, not {type(reactor).__name__}: "
            "run twistd --reactor=asyncio or leave --reactor out"
        )
    return reactor


class ProcessExit:
    """Ends the process with a failure status when its gateway fails.

    twistd has no way to set its exit status, so a fatal gateway failure stops
    the reactor and records the status; an atexit hook, run after twistd has
    cleaned up, exits with it. Supervisors (systemd) then see the failure.
    """

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.status = 0

    def __call__(self, reason: str) -> None:
        self.status = EXIT_FAILURE
        if self.reactor.running:
            self.reactor.stop()

    def apply(self) -> None:
        if self.status:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(self.status)


def tune_gc() -> None:
    """Collect garbage less often in a gateway process (see GC_YOUNG_THRESHOLD)."""
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def raise_open_file_limit() -> None:
    """Let the process open as many files as its hard limit allows, as Go programs (Resgate) do.

    Every client is a socket. The soft limit is often 1,024 where the hard
    one is far higher; under it the gateway would refuse connections past
    about a thousand clients where Resgate, whose Go runtime raises the soft
    limit at start, serves them. Workers and an embedded nats-server inherit it.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            # Some systems refuse an unlimited or very high soft limit; keep the one we have.
            pass


def handle_sigint_even_if_ignored() -> None:
    """Stop on SIGINT even when it was inherited as ignored, as Go Resgate does.

    A background job of a non-interactive shell, and some wrappers, start the
    process with SIGINT ignored; Python keeps that, and Twisted installs its
    SIGINT handler only over Python's default one. Restoring the default
    lets the reactor take SIGINT, like SIGTERM, whatever the parent chose.
    """
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def build_gateway(options: Options) -> tuple[GatewayService, ProcessExit]:
    """Config, reactor and gateway for a standalone process; exits on bad config.

    With ``--workers N`` the gateway supervises N-1 worker processes on its port.
    """
    tune_gc()
    raise_open_file_limit()
    handle_sigint_even_if_ignored()
    try:
        config = config_from_options(options)
        reactor = install_reactor()
        gateway = GatewayService(config, reactor=reactor)
        add_workers(gateway)
    except (ConfigError, ReactorError) as e:
        print(f"resgate: {e}", file=sys.stderr)
        raise SystemExit(EXIT_FAILURE) from None
    exit_on_fatal = ProcessExit(reactor)
    gateway.on_fatal = exit_on_fatal
    return gateway, exit_on_fatal
