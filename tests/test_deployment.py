"""docs/deployment.md, as it is written: the systemd units, a NATS cluster, the Procfile.

The units in examples/systemd/ are checked twice: ``systemd-analyze verify``
where the command exists, and always by reading their settings and running
their ExecStart lines the way systemd would (paths under /opt/resgate
replaced by this checkout's, ports by free ones).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import pytest_twisted

from tests.rig.aio import eventually
from tests.rig.http import http_request
from tests.rig.nats import NatsServer
from tests.rig.process import free_port, refuses_connections
from tests.rig.resources import client_data, connect_client, respond_get
from tests.rig.service import FakeService

ROOT = Path(__file__).resolve().parent.parent
SYSTEMD = ROOT / "examples" / "systemd"
SCRIPTS = sysconfig.get_path("scripts")
#: Where the units expect the installation (docs/deployment.md installs it there).
INSTALL_DIR = "/opt/resgate/venv/bin/"
START_WAIT = 20.0


# ---------------------------------------------------------------------------
# Reading units and running them as systemd would


def read_unit(name: str) -> dict[str, dict[str, list[str]]]:
    """A unit file's settings: section -> key -> values (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in (SYSTEMD / name).read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def one(unit: dict, section: str, key: str) -> str:
    values = unit[section][key]
    assert len(values) == 1, (section, key, values)
    return values[0]


def environment(unit: dict) -> dict[str, str]:
    return dict(v.split("=", 1) for v in unit["Service"].get("Environment", []))


def exec_start(unit: dict, **replacements: str) -> list[str]:
    """ExecStart as an argument list, for this checkout: the twistd of this
    environment, and ``replacements`` (old -> new) applied to each argument."""
    argv = shlex.split(one(unit, "Service", "ExecStart"))
    assert argv[0].startswith(INSTALL_DIR), argv[0]
    argv[0] = os.path.join(SCRIPTS, argv[0][len(INSTALL_DIR):])
    return [replacements.get(arg, arg) for arg in argv]


def systemd_analyze_verify(*names: str) -> None:
    """``systemd-analyze verify`` the units, binaries pointed at this environment."""
    if shutil.which("systemd-analyze") is None:
        return  # the settings checks of each test stand alone
    with tempfile.TemporaryDirectory() as directory:
        for name in names:
            text = (SYSTEMD / name).read_text().replace(INSTALL_DIR, SCRIPTS + "/")
            Path(directory, name).write_text(text)
        result = subprocess.run(["systemd-analyze", "verify", *names], cwd=directory,
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    complaints = [line for line in result.stderr.splitlines()
                  if any(name in line for name in names)]
    assert complaints == [], complaints


class Output:
    """A process's output in a file, so it can never block on a pipe."""

    def __init__(self) -> None:
        self.file = tempfile.NamedTemporaryFile(prefix="deployment-", suffix=".log")

    def text(self) -> str:
        return Path(self.file.name).read_text(errors="replace")


def wait_for(process: subprocess.Popen, output: Output, pattern: str) -> re.Match:
    deadline = time.monotonic() + START_WAIT
    while time.monotonic() < deadline:
        match = re.search(pattern, output.text())
        if match:
            return match
        if process.poll() is not None:
            raise AssertionError(f"exited with {process.returncode}:\n{output.text()}")
        time.sleep(0.05)
    raise AssertionError(f"no {pattern!r} after {START_WAIT}s:\n{output.text()}")


def wait_for_text(output: Output, text: str) -> None:
    deadline = time.monotonic() + START_WAIT
    while text not in output.text():
        assert time.monotonic() < deadline, f"no {text!r} after {START_WAIT}s:\n{output.text()}"
        time.sleep(0.05)


def stop(process: subprocess.Popen) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)


def serving_service(nats_url: str):
    """A fake service that grants access to test.model and serves it."""

    async def start() -> FakeService:
        service = await FakeService(nats_url).start()
        service.on("access.test.model", lambda r: r.respond_result({"get": True}))
        service.on("get.test.model", respond_get)
        return service

    return start()


# ---------------------------------------------------------------------------
# systemd: resgate.service


def test_gateway_unit_restarts_on_failure_and_stops_workers_in_order():
    unit = read_unit("resgate.service")
    assert one(unit, "Service", "Type") == "simple"
    assert one(unit, "Service", "Restart") == "on-failure"
    assert one(unit, "Service", "KillMode") == "mixed"
    assert "network-online.target" in one(unit, "Unit", "After").split()
    assert one(unit, "Install", "WantedBy") == "multi-user.target"
    argv = shlex.split(one(unit, "Service", "ExecStart"))
    assert argv[0] == INSTALL_DIR + "twistd"
    assert argv[1:4] == ["--nodaemon", "--pidfile=", "resgate"]
    assert argv[4:] == ["--config", "/etc/resgate/resgate.json"]
    systemd_analyze_verify("resgate.service")


def test_gateway_unit_exec_start_serves_and_stops_cleanly(nats_server, tmp_path):
    """ExecStart with the example config: serves, and SIGTERM is a clean stop for systemd."""
    settings = json.loads((SYSTEMD / "resgate.json").read_text())
    port = free_port()
    settings.update(natsUrl=nats_server.url, addr="127.0.0.1", port=port)
    config = tmp_path / "resgate.json"
    config.write_text(json.dumps(settings))
    output = Output()
    process = subprocess.Popen(
        exec_start(read_unit("resgate.service"), **{"/etc/resgate/resgate.json": str(config)}),
        cwd=tmp_path, stdout=output.file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_for(process, output, rf"Listening on 127\.0\.0\.1:{port}")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert sock.recv(64).startswith(b"HTTP/1.1 404")
        # systemd counts an exit by SIGTERM as clean for Type=simple: no restart.
        assert stop(process) == -signal.SIGTERM
        assert "Server stopped" in output.text()
    finally:
        stop(process)


def test_gateway_unit_exec_start_fails_without_nats_so_systemd_restarts_it(tmp_path):
    settings = json.loads((SYSTEMD / "resgate.json").read_text())
    settings.update(natsUrl=f"nats://127.0.0.1:{free_port()}", addr="127.0.0.1", port=free_port())
    config = tmp_path / "resgate.json"
    config.write_text(json.dumps(settings))
    argv = exec_start(read_unit("resgate.service"), **{"/etc/resgate/resgate.json": str(config)})
    result = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=60,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 1  # a failure: Restart=on-failure starts it again
    assert "Failed to start server: cannot connect to NATS" in result.stdout


# ---------------------------------------------------------------------------
# systemd: socket activation of the embedded example


def test_socket_unit_hands_its_socket_to_the_application():
    socket_unit = read_unit("resgate-app.socket")
    service_unit = read_unit("resgate-app.service")
    name = one(socket_unit, "Socket", "FileDescriptorName")
    assert environment(service_unit)["RESGATE_LISTEN"] == f"systemd:domain=INET:name={name}"
    assert "resgate-app.socket" in one(service_unit, "Unit", "Requires").split()
    assert one(service_unit, "Service", "Restart") == "on-failure"
    argv = shlex.split(one(service_unit, "Service", "ExecStart"))
    assert argv[0] == INSTALL_DIR + "twistd"
    assert argv[1:] == ["--nodaemon", "--pidfile=", "--python", "/opt/resgate/app.tac"]
    systemd_analyze_verify("resgate-app.socket", "resgate-app.service")


# What systemd does on activation: the listening socket becomes fd 3, the
# LISTEN_* variables describe it, and LISTEN_PID names the process itself,
# which exec keeps.
_ACTIVATE = ("import os, sys; fd = int(sys.argv[1]); os.dup2(fd, 3); os.close(fd);"
             " os.environ['LISTEN_PID'] = str(os.getpid()); os.execv(sys.argv[2], sys.argv[2:])")


@pytest_twisted.ensureDeferred
async def test_socket_activated_application_serves_on_the_socket_systemd_opened(nats_server):
    socket_unit = read_unit("resgate-app.socket")
    service_unit = read_unit("resgate-app.service")
    host, _, _ = one(socket_unit, "Socket", "ListenStream").rpartition(":")
    listener = socket.socket()
    listener.bind((host, 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    host_port = free_port()
    env = {**os.environ, **environment(service_unit), "NATS_URL": nats_server.url,
           "HOST_PORT": str(host_port), "LISTEN_FDS": "1",
           "LISTEN_FDNAMES": one(socket_unit, "Socket", "FileDescriptorName")}
    argv = exec_start(service_unit, **{"/opt/resgate/app.tac": str(ROOT / "examples/embedded/app.tac")})
    output = Output()
    process = subprocess.Popen([sys.executable, "-c", _ACTIVATE, str(listener.fileno()), *argv],
                               env=env, pass_fds=(listener.fileno(),), stdout=output.file,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    listener.close()  # the application holds the only copy now
    service = await serving_service(nats_server.url)
    try:
        await eventually(lambda: f"Listening on 127.0.0.1:{port}" in output.text()
                         or process.poll() is not None, START_WAIT)
        assert process.poll() is None, output.text()
        response = await http_request("GET", f"http://127.0.0.1:{port}/api/test/model")
        assert (response.status, response.json()) == (200, client_data("test.model"))
        status = await http_request("GET", f"http://127.0.0.1:{host_port}/status")
        assert status.json()["gateway"] == {"running": True, "port": port}
        assert stop(process) == -signal.SIGTERM
    finally:
        await service.stop()
        stop(process)


# ---------------------------------------------------------------------------
# Several gateways on one NATS cluster


class ClusterNode(NatsServer):
    """One nats-server of a cluster on loopback, routed to the other nodes."""

    def __init__(self, cluster_port: int, routes: list[int]) -> None:
        route_urls = ",".join(f"nats://127.0.0.1:{p}" for p in routes)
        super().__init__(extra_args=("--cluster_name", "resgate-test",
                                     "--cluster", f"nats://127.0.0.1:{cluster_port}",
                                     "--routes", route_urls))

    def routed(self) -> bool:
        return "Route connection created" in self.log()


@pytest_twisted.ensureDeferred
async def test_gateways_on_two_cluster_nodes_keep_their_clients_in_sync(gateway_factory):
    ports = [free_port(), free_port()]
    nodes = [ClusterNode(ports[0], [ports[1]]), ClusterNode(ports[1], [ports[0]])]
    clients = []
    service = None
    try:
        for node in nodes:
            node.start()
        await eventually(lambda: all(node.routed() for node in nodes), START_WAIT)
        gateways = [await gateway_factory(nats_url=node.url) for node in nodes]
        # The service is on the first node only; the second gateway reaches it through the route.
        service = await serving_service(nodes[0].url)
        for gateway in gateways:
            for _ in range(3):
                client = await connect_client(gateway)
                clients.append(client)
                response = await client.request("subscribe.test.model")
                assert response["result"] == {"models": {"test.model": client_data("test.model")}}
        gets = [r for r in service.requests if r.subject == "get.test.model"]
        assert len(gets) == 2  # one cache per gateway

        service.event("test.model", "change", {"values": {"string": "bar"}})
        for client in clients:
            assert await client.next_message() == {
                "event": "test.model.change", "data": {"values": {"string": "bar"}},
            }
    finally:
        for client in clients:
            await client.close()
        if service is not None:
            await service.stop()
        for node in nodes:
            node.cleanup()


# ---------------------------------------------------------------------------
# The Procfile


def procfile() -> dict[str, str]:
    """The Procfile's processes, read as honcho and foreman read it."""
    line = re.compile(r"^([A-Za-z0-9_-]+):\s*(.+)$")
    processes = {}
    for text in (ROOT / "Procfile").read_text().splitlines():
        match = line.match(text)
        if match:
            processes[match.group(1)] = match.group(2)
    return processes


def test_procfile_runs_the_gateway_with_its_own_nats(tmp_path):
    """One process: no race between a gateway and a nats-server started side by side."""
    processes = procfile()
    assert list(processes) == ["resgate"]
    command = processes["resgate"]
    argv = shlex.split(command)
    assert argv[0] == "resgate" and "--embed-nats" in argv
    nats_port, port = free_port(), free_port()
    command = command.replace("127.0.0.1:4222", f"127.0.0.1:{nats_port}").replace(
        "-p 8080", f"-p {port}")
    env = {**os.environ, "PATH": SCRIPTS + os.pathsep + os.environ["PATH"]}
    output = Output()
    # honcho runs each line with sh -c, in a process group of its own
    process = subprocess.Popen(["sh", "-c", command], cwd=tmp_path, env=env, stdout=output.file,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        wait_for(process, output, rf"Listening on 127\.0\.0\.1:{port}")
        with socket.create_connection(("127.0.0.1", nats_port), timeout=5) as sock:
            assert sock.recv(4) == b"INFO"
        os.killpg(process.pid, signal.SIGTERM)  # as honcho stops its processes
        process.wait(timeout=15)
        # sh exits at once; the gateway stops, then its nats-server, and then they are gone.
        wait_for_text(output, "Server stopped")
        deadline = time.monotonic() + 15
        while not (refuses_connections(port) and refuses_connections(nats_port)):
            assert time.monotonic() < deadline, output.text()
            time.sleep(0.05)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
