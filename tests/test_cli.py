"""The gateway as an operator runs it: ``resgate`` and ``twistd -n resgate`` processes."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import os
import sys
import sysconfig

import pytest

from tests.rig.process import GatewayProcess, free_port, refuses_connections

EVERY_OPTION = [
    "-n, --nats", "-i, --addr", "-p, --port", "-w, --wspath", "-a, --apipath",
    "-r, --reqtimeout", "-u, --headauth", "-t, --wsheadauth", "-m, --metricsport",
    "--apiencoding", "--putmethod", "--deletemethod", "--patchmethod", "--wscompression",
    "--resetthrottle", "--referencethrottle", "-c, --config", "--tls", "--tlscert", "--tlskey",
    "--creds", "--natscert", "--natskey", "--natsrootca", "--alloworigin", "-D, --debug",
    "-V, --trace", "-DV", "-h, --help", "-v, --version", "--embed-nats", "--workers", "--wsdraintimeout",
]

TWISTD = os.path.join(sysconfig.get_path("scripts"), "twistd")


def run(*command: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def http_status(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return sock.recv(64).split(b"\r\n")[0]


@pytest.mark.parametrize("command", [[sys.executable, "-m", "resgate"], [TWISTD, "-n", "resgate"]],
                         ids=["resgate", "twistd"])
def test_help_lists_every_option(command):
    result = run(*command, "--help")
    assert result.returncode == 0, result.stderr
    for option in EVERY_OPTION:
        assert option in result.stdout, option


@pytest.mark.parametrize("command", [[sys.executable, "-m", "resgate"], [TWISTD, "-n", "resgate"]],
                         ids=["resgate", "twistd"])
def test_version_names_gateway_and_protocol(command):
    import resgate

    result = run(*command, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == [f"resgate  v{resgate.__version__}", "protocol v1.2.3"]


@pytest.mark.parametrize("command", [[sys.executable, "-m", "resgate"], [TWISTD, "-n", "resgate"]],
                         ids=["resgate", "twistd"])
def test_invalid_config_file_is_one_line_and_exit_1(command, tmp_path):
    config = tmp_path / "resgate.json"
    config.write_text(json.dumps({"apiEncoding": "xml"}))
    result = run(*command, "-c", str(config))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "apiEncoding" in lines[0] and str(config) in lines[0]
    assert "Traceback" not in result.stdout + result.stderr


def test_missing_config_file_is_created(tmp_path):
    config = tmp_path / "new.json"
    dead = free_port()
    result = run(sys.executable, "-m", "resgate", "-c", str(config), "-n", f"nats://127.0.0.1:{dead}")
    assert result.returncode == 1  # no NATS there, but the file is written first
    written = json.loads(config.read_text())
    assert written["natsUrl"] == f"nats://127.0.0.1:{dead}"
    assert written["port"] == 8080


@pytest.mark.parametrize("twistd", [False, True], ids=["resgate", "twistd"])
def test_unreachable_nats_exits_1_with_a_clear_line(twistd):
    dead = free_port()
    process = GatewayProcess("-n", f"nats://127.0.0.1:{dead}", "-i", "127.0.0.1",
                             "-p", str(free_port()), twistd=twistd)
    try:
        assert process.wait_exit() == 1
        output = process.output()
        failures = [line for line in output.splitlines() if "Failed to start server" in line]
        assert len(failures) == 1 and str(dead) in failures[0], output
        assert "Traceback" not in output
    finally:
        process.cleanup()


@pytest.mark.parametrize("twistd", [False, True], ids=["resgate", "twistd"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serves_until_signalled_then_exits_cleanly(nats_server, twistd, signum):
    """The console script exits 0 as Resgate does; twistd re-raises the signal, as it always does."""
    process = GatewayProcess("-n", nats_server.url, "-i", "127.0.0.1", "-p", str(free_port()),
                             twistd=twistd)
    try:
        port = process.wait_listening()
        assert http_status(port).endswith(b"404 Not Found")
        assert process.stop(signum) == (-signum if twistd else 0), process.output()
        assert refuses_connections(port)
        assert "Server stopped" in process.output()
    finally:
        process.cleanup()


@pytest.mark.parametrize("twistd", [False, True], ids=["resgate", "twistd"])
def test_sigint_inherited_as_ignored_still_stops_the_gateway(nats_server, twistd):
    """A background job of a script inherits SIGINT ignored; Go Resgate stops on it all the same."""
    process = GatewayProcess("-n", nats_server.url, "-i", "127.0.0.1", "-p", str(free_port()),
                             twistd=twistd, ignore_sigint=True)
    try:
        port = process.wait_listening()
        assert process.stop(signal.SIGINT) == (-signal.SIGINT if twistd else 0), process.output()
        assert refuses_connections(port)
        assert "Server stopped" in process.output()
    finally:
        process.cleanup()


def test_embedded_nats_runs_with_the_gateway_and_stops_with_it():
    nats_port = free_port()
    process = GatewayProcess("--embed-nats", "-n", f"nats://127.0.0.1:{nats_port}",
                             "-i", "127.0.0.1", "-p", str(free_port()))
    try:
        port = process.wait_listening()
        with socket.create_connection(("127.0.0.1", nats_port), timeout=5) as sock:
            assert sock.recv(4) == b"INFO"
        assert http_status(port).endswith(b"404 Not Found")
        assert process.stop() == 0, process.output()
        assert refuses_connections(nats_port)
    finally:
        process.cleanup()


def test_go_style_flags_are_accepted(nats_server):
    process = GatewayProcess("-nats", nats_server.url, "-addr=127.0.0.1", f"-port={free_port()}")
    try:
        process.wait_listening()
        assert process.stop() == 0
    finally:
        process.cleanup()


def test_unknown_option_is_a_usage_error():
    result = run(sys.executable, "-m", "resgate", "--no-such-option")
    assert result.returncode == 1
    assert "no-such-option" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("argv", [["-portt", "9000"], ["-pp", "1"], ["-nat", "nats://x"], ["--portt=1"]])
def test_misspelt_flags_are_named_as_unknown(argv):
    result = run(sys.executable, "-m", "resgate", *argv)
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == f"resgate: unknown option {argv[0].partition('=')[0]}"


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_output_into_a_closed_pipe_ends_quietly(flag):
    """As in ``resgate --help | head -1`` once head has gone."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run([sys.executable, "-m", "resgate", flag], stdout=write_end,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=30)
    finally:
        os.close(write_end)
    assert (result.returncode, result.stderr) == (0, b"")


def test_help_piped_into_head_shows_its_first_line_without_a_traceback():
    result = run("sh", "-c", f"'{sys.executable}' -m resgate --help | head -1")
    assert result.returncode == 0
    assert (result.stdout, result.stderr) == ("Usage: resgate [options]\n", "")


def test_twistd_with_another_reactor_is_refused_clearly():
    result = run(TWISTD, "--reactor=select", "--pidfile=", "-n", "resgate")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "resgate: resgate needs Twisted's asyncio reactor, not SelectReactor: "
        "run twistd --reactor=asyncio or leave --reactor out"
    ]
