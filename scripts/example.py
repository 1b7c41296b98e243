"""Runs one example app: the gateway (with embedded NATS), the example's service and its page.

``scripts/example NAME`` sets up .venv and runs this file with its Python;
the tests run it with theirs, on free ports. Ctrl-C (or SIGTERM, SIGHUP)
stops everything it started, the gateway's nats-server included.

What it starts must be what answers: a port already held by another process
(an earlier gateway, say) is named before anything starts, and the app is
only called live once both children said they listen on their ports and are
still running.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES_DIR = ROOT / "examples"
PROGRAM = "scripts/example"
HOST = "127.0.0.1"
DEFAULT_GATEWAY_PORT = 8080
DEFAULT_NATS_PORT = 4222
MAX_PORT = 65535
MAX_PORT_DIGITS = len(str(MAX_PORT))
#: Characters of a bad argument repeated in its error.
MAX_QUOTED = 20
#: How long the gateway and the service may take to listen on their ports.
START_TIMEOUT = 30.0
#: How long each child may take to exit after SIGTERM before it is killed.
STOP_TIMEOUT = 10.0
#: How often the main loop looks at signals and children between output.
POLL_INTERVAL = 0.1
#: Bytes read from a child's output at a time.
READ_SIZE = 65536
#: Exit status of a start that failed or a child that died; a bad command line
#: exits 2 (argparse), a stop by SIGINT, SIGTERM or SIGHUP 128 + the signal.
EXIT_FAILED = 1
_SIGNAL_EXIT = 128
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Example:
    """What the launcher needs to know of one example beyond its server.py."""

    title: str
    page_port: int
    #: Gateway options the example needs (header auth).
    gateway_flags: tuple[str, ...] = ()
    #: A resource path to show over HTTP.
    api_path: str = "example/model"


EXAMPLES = {
    "hello-world": Example("Hello World", 8081),
    "edit-text": Example("Edit Text", 8082, api_path="example/shared"),
    "book-collection": Example("Book Collection", 8083, api_path="library/books"),
    "jwt-authentication": Example(
        "JWT Authentication", 8084,
        ("--wsheadauth", "auth.jwtHeader", "--headauth", "auth.jwtHeader"),
    ),
    "password-authentication": Example("Password Authentication", 8085, api_path="example/ticker"),
    "client-session": Example("Client Session", 8086, api_path=""),
}


class StartFailed(Exception):
    """The app could not be started; str() says why, in a sentence."""


def say(message: str) -> None:
    print(f"{PROGRAM}: {message}", file=sys.stderr, flush=True)


def _stop_with_parent() -> None:
    """In the child: have Linux send SIGTERM when the launcher dies, so nothing outlives a killed launcher."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def check_port_free(port: int, what: str, option: str) -> None:
    """Raise StartFailed naming ``port`` and how to find its holder, when something holds it.

    Binds the way the gateway does (SO_REUSEADDR), so connections left in
    TIME_WAIT by an earlier run do not count as a holder.
    """
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise StartFailed(
                    f"port {port} ({what}) is in use by another process, perhaps a gateway or"
                    f" example from an earlier run; see which with: ss -ltnp 'sport = :{port}'"
                    f" (or: lsof -iTCP:{port} -sTCP:LISTEN), then stop it or choose another"
                    f" port with {option}"
                ) from None
            raise StartFailed(f"port {port} ({what}) cannot be used: {e.strerror}") from None


def descendants(pid: int) -> set[int]:
    """The live descendants of ``pid`` (Linux /proc), e.g. the gateway's nats-server."""
    parents: dict[int, list[int]] = {}
    for entry in os.scandir("/proc") if os.path.isdir("/proc") else ():
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as f:
                # The command name (field 2) may hold spaces; the parent follows it.
                ppid = int(f.read().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        parents.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    pending = [pid]
    while pending:
        for child in parents.get(pending.pop(), []):
            if child not in found:
                found.add(child)
                pending.append(child)
    return found


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie (exited, its parent gone, not yet reaped) does not."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class Child:
    """One process the launcher started, its output relayed line by line with a label."""

    label: str
    command: list[str]
    ready: re.Pattern[str]
    process: subprocess.Popen = field(init=False)
    is_ready: bool = False
    offspring: set[int] = field(default_factory=set)
    _partial: bytes = b""

    def start(self, selector: selectors.BaseSelector) -> None:
        # A session of its own: a Ctrl-C at the terminal reaches the launcher
        # alone, which stops each child once, in order.
        self.process = subprocess.Popen(
            self.command, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_stop_with_parent,
        )
        os.set_blocking(self.process.stdout.fileno(), False)
        selector.register(self.process.stdout, selectors.EVENT_READ, self)

    def relay(self, selector: selectors.BaseSelector) -> None:
        """Print what the child wrote since the last call; unregister at its end."""
        try:
            data = os.read(self.process.stdout.fileno(), READ_SIZE)
        except BlockingIOError:
            return
        if not data:
            selector.unregister(self.process.stdout)
            data = b"\n" if self._partial else b""
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for raw in lines:
            line = raw.decode("utf-8", "replace").rstrip()
            print(f"{self.label:>8} | {line}", flush=True)
            if self.ready.search(line):
                self.is_ready = True

    def note_offspring(self) -> None:
        self.offspring |= descendants(self.process.pid)

    def stop(self, selector: selectors.BaseSelector) -> None:
        """SIGTERM, a bounded wait (relaying output), then SIGKILL for whatever is left."""
        self.note_offspring()
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline and (
            self.process.poll() is None or any(_alive(pid) for pid in self.offspring)
        ):
            pump(selector, POLL_INTERVAL)
        leftovers = [pid for pid in self.offspring if _alive(pid)]
        if self.process.poll() is None or leftovers:
            say(f"the {self.label} did not stop within {STOP_TIMEOUT:.0f}s; killing it")
            for pid in leftovers:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait()
        pump(selector, 0)
        self.process.stdout.close()


def pump(selector: selectors.BaseSelector, timeout: float) -> None:
    """Relay the children's output for up to ``timeout`` seconds."""
    if not selector.get_map():
        time.sleep(timeout)
        return
    for key, _ in selector.select(timeout):
        key.data.relay(selector)


def _port(value: str) -> int:
    """A TCP port number; a hostile value is quoted only in part."""
    if not (value.isascii() and value.isdigit() and len(value) <= MAX_PORT_DIGITS
            and 1 <= int(value) <= MAX_PORT):
        raise argparse.ArgumentTypeError(
            f"must be a port from 1 to {MAX_PORT}, not {value[:MAX_QUOTED]!r}"
        )
    return int(value)


def arguments(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    own, gateway_args = _split(argv)
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Run one example: the gateway on --port with an embedded nats-server on"
        " --nats-port, and the example's service with its page on --page-port, all on"
        f" {HOST}. Ctrl-C stops them all. Options after -- go to the gateway.",
    )
    parser.add_argument("name", choices=sorted(EXAMPLES), metavar="NAME",
                        help="the example: " + ", ".join(sorted(EXAMPLES)))
    parser.add_argument("--port", type=_port, default=DEFAULT_GATEWAY_PORT,
                        help="the gateway's HTTP and WebSocket port (default: %(default)s)")
    parser.add_argument("--nats-port", type=_port, default=DEFAULT_NATS_PORT,
                        help="the embedded nats-server's port (default: %(default)s)")
    parser.add_argument("--page-port", type=_port, default=None,
                        help="the page's port (default: the example's own, 8081 to 8086)")
    return parser.parse_args(own), gateway_args


def _split(argv: list[str]) -> tuple[list[str], list[str]]:
    """The launcher's own arguments, and the gateway's (after ``--``)."""
    if "--" in argv:
        at = argv.index("--")
        return argv[:at], argv[at + 1 :]
    return argv, []


def run(args: argparse.Namespace, gateway_args: list[str], stop_signal: list[int]) -> int:
    example = EXAMPLES[args.name]
    page_port = example.page_port if args.page_port is None else args.page_port
    ports = [(args.port, "the gateway's HTTP and WebSocket port", "--port"),
             (args.nats_port, "the embedded nats-server's port", "--nats-port"),
             (page_port, "the example's page", "--page-port")]
    if len({port for port, _, _ in ports}) < len(ports):
        raise StartFailed("--port, --nats-port and --page-port must be three different ports")
    for port, what, option in ports:
        check_port_free(port, what, option)

    nats_url = f"nats://{HOST}:{args.nats_port}"
    gateway = Child("gateway", [
        sys.executable, "-m", "resgate", "--embed-nats", "-n", nats_url, "-i", HOST,
        "-p", str(args.port), *example.gateway_flags, *gateway_args,
    ], re.compile(rf"\bListening on {re.escape(HOST)}:{args.port}$"))
    service_command = [sys.executable, str(EXAMPLES_DIR / args.name / "server.py"),
                       "--nats", nats_url, "--addr", HOST, "--port", str(page_port)]
    if args.port != DEFAULT_GATEWAY_PORT:
        # The page assumes the gateway on port 8080 of its own host otherwise.
        service_command += ["--resgate", f"ws://{HOST}:{args.port}"]
    service = Child("service", service_command,
                    re.compile(rf"^Client available at http://{re.escape(HOST)}:{page_port}$"))
    children = [gateway, service]
    selector = selectors.DefaultSelector()
    started: list[Child] = []
    try:
        for child in children:
            child.start(selector)
            started.append(child)
            print(f"{PROGRAM}: started the {child.label}, pid {child.process.pid}", flush=True)
        deadline = time.monotonic() + START_TIMEOUT
        while not all(child.is_ready for child in children):
            if stop_signal:
                return _SIGNAL_EXIT + stop_signal[0]
            for child in children:
                if child.process.poll() is not None:
                    raise StartFailed(f"the {child.label} exited with status"
                                      f" {child.process.returncode} before it was ready (see its"
                                      " output above)")
            if time.monotonic() > deadline:
                raise StartFailed(f"not ready within {START_TIMEOUT:.0f}s (see the output above)")
            pump(selector, POLL_INTERVAL)
        for child in children:
            child.note_offspring()
        page = f"http://{HOST}:{page_port}"
        print(f"""
  {example.title} is live: open {page} in a browser, and in a second tab
  to see changes arrive live.

  Gateway on http://{HOST}:{args.port} (pid {gateway.process.pid}), over HTTP e.g.
  http://{HOST}:{args.port}/api/{example.api_path}; embedded NATS on {nats_url};
  service pid {service.process.pid}. Ctrl-C stops all.
""", flush=True)
        while not stop_signal:
            for child in children:
                if child.process.poll() is not None:
                    say(f"the {child.label} exited with status {child.process.returncode};"
                        " stopping the rest")
                    return EXIT_FAILED
            pump(selector, POLL_INTERVAL)
        return _SIGNAL_EXIT + stop_signal[0]
    finally:
        if started:
            say("stopping the service, then the gateway")
        # The service first, so that it never sees its NATS go away.
        for child in reversed(started):
            child.stop(selector)
        if started:
            say("stopped")
        selector.close()


def main(argv: list[str] | None = None) -> int:
    args, gateway_args = arguments(sys.argv[1:] if argv is None else argv)
    stop_signal: list[int] = []

    def on_signal(signum: int, _frame) -> None:
        if not stop_signal:
            stop_signal.append(signum)

    for signum in _STOP_SIGNALS:
        signal.signal(signum, on_signal)
    try:
        return run(args, gateway_args, stop_signal)
    except StartFailed as e:
        say(str(e))
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
