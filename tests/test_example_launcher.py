"""scripts/example.py, the one command that runs an example: gateway, embedded NATS, service, page.

Each test gives it free ports, so it never meets a gateway someone else runs.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.rig.process import descendants, free_port, is_running, refuses_connections

LAUNCHER = Path(__file__).resolve().parent.parent / "scripts" / "example.py"
EXAMPLES = ["hello-world", "edit-text", "book-collection", "jwt-authentication",
            "password-authentication", "client-session"]
#: Bounds on the launcher's start (gateway, nats-server, service) and stop.
START_TIMEOUT = 40.0
STOP_TIMEOUT = 30.0
POLL_INTERVAL = 0.05


class Launcher:
    """The launcher as a subprocess with its output in a file (never a full pipe)."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.output_path = tmp_path / "launcher.log"
        self._output = open(self.output_path, "wb")
        self.process = subprocess.Popen([sys.executable, str(LAUNCHER), *args], stdin=subprocess.DEVNULL,
                                        stdout=self._output, stderr=subprocess.STDOUT,
                                        start_new_session=True)

    def output(self) -> str:
        return self.output_path.read_text(encoding="utf-8", errors="replace")

    def wait_output(self, text: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while text not in self.output():
            assert self.process.poll() is None, f"launcher exited {self.process.returncode}:\n{self.output()}"
            assert time.monotonic() < deadline, f"no {text!r} after {START_TIMEOUT}s:\n{self.output()}"
            time.sleep(POLL_INTERVAL)

    def wait_exit(self) -> int:
        try:
            return self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"launcher did not exit within {STOP_TIMEOUT}s:\n{self.output()}")

    def cleanup(self, pids: set[int]) -> None:
        """Kill whatever a failed test left behind."""
        for pid in [self.process.pid, *pids]:
            if is_running(pid):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(timeout=5)
        self._output.close()


def http_get(port: int, path: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


def wait_gone(pids: set[int]) -> set[int]:
    """The pids still running after a bounded wait."""
    deadline = time.monotonic() + STOP_TIMEOUT
    while (left := {pid for pid in pids if is_running(pid)}) and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL)
    return left


def ports() -> dict[str, int]:
    chosen: set[int] = set()
    while len(chosen) < 3:
        chosen.add(free_port())
    gateway, nats, page = sorted(chosen)
    return {"--port": gateway, "--nats-port": nats, "--page-port": page}


def flags(chosen: dict[str, int]) -> list[str]:
    return [item for option, port in chosen.items() for item in (option, str(port))]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("example", EXAMPLES)
def test_runs_an_example_and_a_signal_stops_everything_it_started(tmp_path, example, signum):
    chosen = ports()
    launcher = Launcher(tmp_path, example, *flags(chosen))
    started: set[int] = set()
    try:
        launcher.wait_output("is live: open")
        started = descendants(launcher.process.pid)
        # The gateway, its nats-server and the service, at least.
        assert len(started) >= 3, launcher.output()
        assert f"Listening on 127.0.0.1:{chosen['--port']}" in launcher.output()
        assert http_get(chosen["--page-port"], "/").startswith(b"HTTP/1.1 200")
        assert http_get(chosen["--port"], "/nothing").startswith(b"HTTP/1.1 404")
        launcher.process.send_signal(signum)
        assert launcher.wait_exit() == 128 + signum, launcher.output()
        assert wait_gone(started) == set(), launcher.output()
        assert all(refuses_connections(port) for port in chosen.values())
        assert "Traceback" not in launcher.output()
        assert "Server stopped" in launcher.output()
    finally:
        launcher.cleanup(started)


def test_a_killed_launcher_leaves_nothing_running(tmp_path):
    """SIGKILL leaves it no time to stop its children: Linux stops them (PR_SET_PDEATHSIG)."""
    chosen = ports()
    launcher = Launcher(tmp_path, "hello-world", *flags(chosen))
    started: set[int] = set()
    try:
        launcher.wait_output("is live: open")
        started = descendants(launcher.process.pid)
        assert len(started) >= 3, launcher.output()
        launcher.process.kill()
        launcher.wait_exit()
        assert wait_gone(started) == set()
        assert all(refuses_connections(port) for port in chosen.values())
    finally:
        launcher.cleanup(started)


@pytest.mark.parametrize("held", ["--port", "--nats-port", "--page-port"])
def test_a_port_held_by_another_process_is_named_and_nothing_starts(tmp_path, held):
    chosen = ports()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", chosen[held]))
        holder.listen()
        result = subprocess.run([sys.executable, str(LAUNCHER), "book-collection", *flags(chosen)],
                                capture_output=True, text=True, timeout=STOP_TIMEOUT,
                                stdin=subprocess.DEVNULL)
    port = chosen[held]
    assert result.returncode == 1, result
    assert f"port {port} " in result.stderr and "in use by another process" in result.stderr
    assert f"ss -ltnp 'sport = :{port}'" in result.stderr and held in result.stderr
    assert "started the" not in result.stdout
    assert "Traceback" not in result.stderr
    assert all(refuses_connections(other) for option, other in chosen.items() if option != held)


def test_a_gateway_that_fails_to_start_stops_the_service_too(tmp_path):
    chosen = ports()
    launcher = Launcher(tmp_path, "hello-world", *flags(chosen), "--", "--bogus")
    started: set[int] = set()
    try:
        started = descendants(launcher.process.pid)
        assert launcher.wait_exit() == 1
        output = launcher.output()
        assert "resgate: unknown option --bogus" in output
        assert "the gateway exited with status 1 before it was ready" in output
        assert "is live" not in output and "Traceback" not in output
        assert wait_gone(started) == set()
        assert refuses_connections(chosen["--page-port"])
    finally:
        launcher.cleanup(started)


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "the following arguments are required: NAME"),
        (["no-such-example"], "invalid choice: 'no-such-example'"),
        (["hello-world", "--port", "70000"], "--port: must be a port from 1 to 65535, not '70000'"),
        (["hello-world", "--nats-port", "x"], "--nats-port: must be a port from 1 to 65535, not 'x'"),
        (["hello-world", "--port", "9000", "--page-port", "9000"], "must be three different ports"),
        (["hello-world", "--page-port", "9" * 5000], "--page-port: must be a port from 1 to 65535, not '99999999999999999999'"),
        (["x" * 5000], "invalid choice"),
    ],
)
def test_bad_command_lines_are_refused_before_anything_starts(argv, message):
    result = subprocess.run([sys.executable, str(LAUNCHER), *argv], capture_output=True, text=True,
                            timeout=STOP_TIMEOUT, stdin=subprocess.DEVNULL)
    assert result.returncode in (1, 2)
    assert message in result.stderr
    assert "started the" not in result.stdout and "Traceback" not in result.stderr
