"""The gateway as a separate process: the console script or twistd."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time

START_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0
_LISTENING = re.compile(r"Listening on (\S+):(\d+)")


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def descendants(pid: int) -> set[int]:
    """The live (not zombie) descendants of ``pid``, from Linux's /proc."""
    parents: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and is_running(int(name)):
            try:
                with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as f:
                    parents.setdefault(int(f.read().rpartition(")")[2].split()[1]), []).append(int(name))
            except (OSError, ValueError, IndexError):
                continue
    found: set[int] = set()
    pending = [pid]
    while pending:
        for child in parents.get(pending.pop(), []):
            if child not in found:
                found.add(child)
                pending.append(child)
    return found


def is_running(pid: int) -> bool:
    """True while ``pid`` exists and is no zombie (an exited child not yet reaped)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def proc_status_bytes(pid: int, field: str) -> int:
    """A memory figure of ``/proc/<pid>/status`` (VmRSS, VmHWM), in bytes."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def refuses_connections(port: int) -> bool:
    """True when nothing listens on the loopback port."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class GatewayProcess:
    """Runs ``python -m resgate ARGS`` (or ``twistd -n resgate ARGS``, or another ``module``).

    Output goes to a file, so the process can never block on a full pipe;
    ``output()`` reads it. ``wait_listening()`` returns the port it listens on.
    """

    def __init__(self, *args: str, twistd: bool = False, cwd: str | None = None,
                 ignore_sigint: bool = False, prefix: tuple[str, ...] = (), module: str = "resgate",
                 env: dict[str, str] | None = None, pass_fds: tuple[int, ...] = ()) -> None:
        """``prefix`` runs before the command (a wrapper that execs it), with ``env`` and
        the descriptors ``pass_fds`` kept open; ``module`` is what ``python -m`` runs."""
        self._dir = tempfile.mkdtemp(prefix="resgate-proc-")
        self.output_path = os.path.join(self._dir, "output.log")
        if twistd:
            twistd_script = os.path.join(sysconfig.get_path("scripts"), "twistd")
            command = [twistd_script, "--pidfile=", "-n", "resgate", *args]
        else:
            command = [sys.executable, "-m", module, *args]
        command = [*prefix, *command]
        self._output = open(self.output_path, "wb")
        # ignore_sigint: started the way a background job of a script is.
        self.process = subprocess.Popen(command, stdout=self._output, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, cwd=cwd or self._dir,
                                        env=env, pass_fds=pass_fds,
                                        preexec_fn=_ignore_sigint if ignore_sigint else None)

    def output(self) -> str:
        with open(self.output_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def wait_listening(self, timeout: float = START_TIMEOUT) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = _LISTENING.search(self.output())
            if match:
                return int(match.group(2))
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.process.returncode}:\n{self.output()}")
            time.sleep(0.05)
        raise RuntimeError(f"gateway not listening after {timeout}s:\n{self.output()}")

    def wait_output(self, text: str, timeout: float = START_TIMEOUT) -> None:
        """Wait (bounded) until the gateway's output holds ``text``."""
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.process.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {text!r} from the gateway after {timeout}s:\n{self.output()}")
            time.sleep(0.05)

    def wait_exit(self, timeout: float = STOP_TIMEOUT) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
            raise RuntimeError(f"gateway did not exit within {timeout}s:\n{self.output()}")

    def stop(self, signum: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        """Send ``signum`` and wait (bounded) for the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        return self.wait_exit(timeout)

    def cleanup(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)
        self._output.close()
