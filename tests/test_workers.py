"""``--workers N``: N gateway processes behind one port, on one NATS, in sync.

Which process serves a connection is the kernel's choice (SO_REUSEPORT). The
tests see it from outside, in /proc: a process serves a client when it holds
the server side of an established TCP connection to the gateway's port. That
needs nothing from the gateway and works the same with TLS. Twenty
connections all landing on one of two processes would happen about twice in
a million runs.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request

import pytest
import pytest_twisted
import treq
from autobahn.twisted.websocket import WebSocketClientFactory, connectWS
from twisted.internet import defer, ssl
from twisted.web.client import Agent
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from resgate.config import Config, ConfigError, MAX_WORKERS
from resgate.options import Options, config_from_options
from resgate.workers import read_settings, worker_settings
from tests.rig.aio import eventually, within
from tests.rig.process import GatewayProcess, free_port, refuses_connections
from tests.rig.resources import (
    PROTOCOL_VERSION,
    VERSION_LATEST,
    client_data,
    connect_client,
    get_result,
    respond_get,
)
from tests.rig.service import FakeService
from tests.rig.tls import write_self_signed_cert
from tests.rig.ws import WsClient

#: Connections opened to see that every process gets some.
CONNECTIONS = 20
#: Bound on a gateway process tree starting or a worker starting again (seconds).
START_WAIT = 20.0

_STARTED_WORKER = re.compile(r"Started worker (\d+) of \d+ \(pid (\d+)\)")
_TCP_ESTABLISHED = "01"


# ---------------------------------------------------------------------------
# Seeing the processes from outside


def worker_pids(process: GatewayProcess) -> dict[int, int]:
    """The latest pid of each worker number the supervisor reported starting."""
    return {int(n): int(pid) for n, pid in _STARTED_WORKER.findall(process.output())}


def serving_workers(process: GatewayProcess) -> int:
    """How many worker processes have said they listen (restarts count again)."""
    return len(re.findall(r"\[worker \d+\] Listening on", process.output()))


async def start_workers(process: GatewayProcess, workers: int) -> int:
    """Wait until the first process and its ``workers - 1`` workers listen; the port."""
    await eventually(lambda: _listening_or_dead(process), START_WAIT)
    port = process.wait_listening(timeout=1)
    await eventually(lambda: serving_workers(process) >= workers - 1 or _dead(process), START_WAIT)
    assert serving_workers(process) == workers - 1, process.output()
    # The supervisor says so too, once all serve.
    summary = f"{workers} of {workers} processes serving"
    await eventually(lambda: summary in process.output() or _dead(process), START_WAIT)
    return port


def _dead(process: GatewayProcess) -> bool:
    if process.process.poll() is not None:
        raise AssertionError(f"gateway exited with {process.process.returncode}:\n{process.output()}")
    return False


def _listening_or_dead(process: GatewayProcess) -> bool:
    return "Listening on" in process.output() or _dead(process)


def _established_server_sockets(port: int) -> set[int]:
    """Inodes of established TCP connections whose local end is ``port``."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            fields = row.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == _TCP_ESTABLISHED:
                inodes.add(int(fields[9]))
    return inodes


def connections_by_pid(port: int, pids) -> dict[int, int]:
    """How many established connections to ``port`` each of ``pids`` serves."""
    inodes = _established_server_sockets(port)
    counts = {}
    for pid in pids:
        count = 0
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and int(target[8:-1]) in inodes:
                count += 1
        counts[pid] = count
    return counts


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def listening_pids(port: int, pids) -> set[int]:
    """Which of ``pids`` hold a listening socket on ``port``."""
    inodes = set()
    with open("/proc/net/tcp") as f:
        for row in f.read().splitlines()[1:]:
            fields = row.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                inodes.add(int(fields[9]))
    holders = set()
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and int(target[8:-1]) in inodes:
                holders.add(pid)
    return holders


def shut_down(process: GatewayProcess) -> None:
    """Stop the gateway as an operator would, so that its embedded nats-server stops too."""
    try:
        if process.process.poll() is None:
            process.stop(signal.SIGTERM)
    finally:
        process.cleanup()


def gateway_args(nats_url: str, *extra: str) -> list[str]:
    return ["-n", nats_url, "-i", "127.0.0.1", "-p", str(free_port()), *extra]


async def serving_fake_service(nats_url: str) -> FakeService:
    """A service that grants access to and serves every fixture resource it is asked for."""
    service = await FakeService(nats_url).start()
    service.on("access.test.model", lambda r: r.respond_result({"get": True}))
    service.on("get.test.model", respond_get)
    return service


# ---------------------------------------------------------------------------
# Serving


@pytest_twisted.ensureDeferred
async def test_two_workers_serve_clients_that_stay_in_sync():
    nats_url = f"nats://127.0.0.1:{free_port()}"
    process = GatewayProcess("--workers", "2", "--embed-nats", *gateway_args(nats_url))
    clients: list[WsClient] = []
    service = None
    try:
        port = await start_workers(process, 2)
        (child,) = worker_pids(process).values()
        # Settings travel on stdin: nothing of the command line reaches the worker.
        with open(f"/proc/{child}/cmdline", "rb") as f:
            assert f.read().split(b"\0")[1:3] == [b"-m", b"resgate.workers"]
        service = await serving_fake_service(nats_url)

        for _ in range(CONNECTIONS):
            client = await connect_client(f"ws://127.0.0.1:{port}/")
            clients.append(client)
            response = await client.request("subscribe.test.model")
            assert response["result"] == {"models": {"test.model": client_data("test.model")}}

        served = connections_by_pid(port, [process.process.pid, child])
        assert sum(served.values()) == CONNECTIONS, served
        assert all(served.values()), f"a process served no client: {served}"
        # One cache per process: each fetched the model once, on the one NATS.
        gets = [r for r in service.requests if r.subject == "get.test.model"]
        assert len(gets) == 2

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
        shut_down(process)


@implementer(IPolicyForHTTPS)
class TrustOne:
    """Trusts the one self-signed test certificate."""

    def __init__(self, cert_path: str) -> None:
        with open(cert_path, "rb") as f:
            self.authority = ssl.Certificate.loadPEM(f.read())

    def options(self):
        return ssl.optionsForClientTLS("localhost", trustRoot=self.authority)

    def creatorForNetloc(self, hostname, port):
        return self.options()


async def connect_wss(url: str, trust: TrustOne) -> WsClient:
    factory = WebSocketClientFactory(url)
    factory.protocol = WsClient
    factory.opened = defer.Deferred()
    connectWS(factory, contextFactory=trust.options(), timeout=5)
    client = await within(factory.opened)
    response = await client.request("version", {"protocol": VERSION_LATEST})
    assert response["result"] == {"protocol": PROTOCOL_VERSION}
    return client


@pytest_twisted.ensureDeferred
async def test_every_worker_serves_tls(nats_server, tmp_path):
    cert, key = write_self_signed_cert(tmp_path)
    process = GatewayProcess("--workers", "2", "--tls", "--tlscert", cert, "--tlskey", key,
                             *gateway_args(nats_server.url))
    trust = TrustOne(cert)
    clients: list[WsClient] = []
    service = await serving_fake_service(nats_server.url)
    try:
        port = await start_workers(process, 2)
        for _ in range(CONNECTIONS):
            clients.append(await connect_wss(f"wss://127.0.0.1:{port}/", trust))
        (child,) = worker_pids(process).values()
        served = connections_by_pid(port, [process.process.pid, child])
        assert sum(served.values()) == CONNECTIONS and all(served.values()), served

        from twisted.internet import reactor

        http = treq.client.HTTPClient(Agent(reactor, contextFactory=trust))
        for _ in range(4):
            response = await within(http.get(f"https://127.0.0.1:{port}/api/test/model"))
            assert response.code == 200
            assert await within(response.json()) == get_result("test.model")["model"]
    finally:
        for client in clients:
            await client.close()
        await service.stop()
        shut_down(process)


@pytest_twisted.ensureDeferred
async def test_metrics_stay_with_the_first_process(nats_server):
    metrics_port = free_port()
    process = GatewayProcess("--workers", "3", "-m", str(metrics_port),
                             *gateway_args(nats_server.url))
    try:
        await start_workers(process, 3)
        pids = [process.process.pid, *worker_pids(process).values()]
        assert listening_pids(metrics_port, pids) == {process.process.pid}
        with socket.create_connection(("127.0.0.1", metrics_port), timeout=5) as sock:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert sock.recv(64).startswith(b"HTTP/1.1 200")
        # The probes are the first process's too: its own gateway's readiness.
        with socket.create_connection(("127.0.0.1", metrics_port), timeout=5) as sock:
            sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert sock.recv(64).startswith(b"HTTP/1.1 200")
        # So is the status page: it names the worker count (docs/operations.md).
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/status.json", timeout=5) as response:
            assert json.load(response)["workers"] == 3
    finally:
        shut_down(process)


@pytest_twisted.ensureDeferred
async def test_workers_share_a_listen_endpoint(nats_server):
    """``--listen tcp:port=N``: every process listens on port N (SO_REUSEPORT), and each serves."""
    port = free_port()
    process = GatewayProcess("--workers", "2", "-n", nats_server.url,
                             "--listen", f"tcp:port={port}:interface=127.0.0.1")
    clients: list[WsClient] = []
    try:
        assert await start_workers(process, 2) == port
        pids = [process.process.pid, *worker_pids(process).values()]
        assert listening_pids(port, pids) == set(pids)
        for _ in range(CONNECTIONS):
            clients.append(await connect_client(f"ws://127.0.0.1:{port}/"))
        served = connections_by_pid(port, pids)
        assert sum(served.values()) == CONNECTIONS and all(served.values()), served
    finally:
        for client in clients:
            await client.close()
        shut_down(process)


def test_workers_refuse_a_listen_endpoint_on_port_0():
    """Each process would get a port of its own: one line and exit status 1 instead."""
    result = subprocess.run([sys.executable, "-m", "resgate", "--workers", "2",
                             "--listen", "tcp:port=0:interface=127.0.0.1"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        'resgate: listen "tcp:port=0:interface=127.0.0.1" from --listen cannot be shared by --workers 2:'
        " with port 0 each process would listen on a port of its own; name the port"
    ], result.stderr


# ---------------------------------------------------------------------------
# Supervision


@pytest_twisted.ensureDeferred
async def test_a_killed_worker_is_logged_and_started_again(nats_server):
    process = GatewayProcess("--workers", "2", *gateway_args(nats_server.url))
    clients: list[WsClient] = []
    try:
        port = await start_workers(process, 2)
        old = worker_pids(process)[2]
        os.kill(old, signal.SIGKILL)
        await eventually(lambda: worker_pids(process)[2] != old, START_WAIT)
        assert f"Worker 2 (pid {old}) was killed by SIGKILL; starting it again in 1s" in process.output()
        await eventually(lambda: serving_workers(process) == 2 or _dead(process), START_WAIT)
        new = worker_pids(process)[2]

        for _ in range(CONNECTIONS):
            clients.append(await connect_client(f"ws://127.0.0.1:{port}/"))
        served = connections_by_pid(port, [process.process.pid, new])
        assert sum(served.values()) == CONNECTIONS and all(served.values()), served
    finally:
        for client in clients:
            await client.close()
        shut_down(process)


@pytest.mark.parametrize("twistd", [False, True], ids=["resgate", "twistd"])
@pytest_twisted.ensureDeferred
async def test_stopping_the_gateway_stops_every_worker(twistd):
    nats_url = f"nats://127.0.0.1:{free_port()}"
    process = GatewayProcess("--workers", "3", "--embed-nats", *gateway_args(nats_url),
                             twistd=twistd)
    try:
        port = await start_workers(process, 3)
        children = worker_pids(process)
        assert sorted(children) == [2, 3]
        assert process.stop(signal.SIGTERM) == (-signal.SIGTERM if twistd else 0), process.output()
        assert not any(alive(pid) for pid in children.values())
        assert refuses_connections(port)
        output = process.output()
        for number, pid in children.items():
            assert f"Worker {number} (pid {pid}) stopped" in output
        assert "starting it again" not in output
        assert "Traceback" not in output
        # The embedded nats-server ran once, in the first process, and stopped with it.
        assert output.count("Starting embedded nats-server") == 1
        assert refuses_connections(int(nats_url.rsplit(":", 1)[1]))
    finally:
        shut_down(process)


@pytest_twisted.ensureDeferred
async def test_workers_stop_when_their_supervisor_is_killed(nats_server):
    process = GatewayProcess("--workers", "3", *gateway_args(nats_server.url))
    try:
        port = await start_workers(process, 3)
        children = list(worker_pids(process).values())
        process.process.kill()
        process.process.wait(timeout=5)
        await eventually(lambda: not any(alive(pid) for pid in children), 15)
        assert refuses_connections(port)
    finally:
        shut_down(process)


# ---------------------------------------------------------------------------
# The option


def test_workers_is_a_flag_only_setting(tmp_path):
    path = tmp_path / "resgate.json"
    options = Options()
    options.parseOptions(["--workers", "4", "-c", str(path)])
    config = config_from_options(options)
    assert config.workers == 4
    assert "workers" not in json.loads(path.read_text())

    options = Options()
    options.parseOptions(["-c", str(path)])
    assert config_from_options(options).workers == 1


@pytest.mark.parametrize("value", ["0", "-1", "two", str(MAX_WORKERS + 1)])
def test_invalid_worker_count_is_one_line_and_exit_1(value):
    result = subprocess.run([sys.executable, "-m", "resgate", "--workers", value],
                            capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == (
        f'resgate: invalid value "{value}" for --workers: must be an integer from 1 to {MAX_WORKERS}'
    )


def test_config_refuses_worker_counts_out_of_range():
    for value in (0, MAX_WORKERS + 1, True, "2"):
        with pytest.raises(ConfigError, match="invalid workers"):
            Config(workers=value)


def test_a_worker_gets_the_effective_settings_but_no_nats_metrics_or_workers():
    config = Config(nats_url="nats://127.0.0.1:4333", embed_nats=True, workers=4, metrics_port=9090,
                    port=0, request_timeout=1234, put_method="set", debug=True)
    read, write = os.pipe()
    try:
        os.write(write, worker_settings(config, 8123))
        worker = read_settings(read)
    finally:
        os.close(read)
        os.close(write)
    assert (worker.port, worker.metrics_port, worker.embed_nats, worker.workers) == (8123, 0, False, 1)
    assert (worker.nats_url, worker.request_timeout, worker.put_method, worker.debug) == (
        "nats://127.0.0.1:4333", 1234, "set", True)
    assert worker.allow_methods == config.allow_methods


def test_a_worker_loads_its_entry_point_once():
    # A worker is ``python -m resgate.workers``: its code runs as __main__ and
    # nothing may import it again under its own name (a second copy would have
    # module state of its own). Without settings on stdin it exits at once.
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "resgate.workers"],
                            capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert result.returncode == 1
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:")]
    assert "resgate.process" in imported, result.stderr
    assert imported.count("resgate.workers") == 1
    assert "resgate.workers.__main__" not in imported
    assert "resgate worker: no settings from the supervisor on stdin" in result.stderr


def test_help_lists_workers():
    options = Options()
    assert "--workers <count>" in str(options)
