"""GatewayService: start order, stop order, failures, and life inside a host application."""

from __future__ import annotations

import email.utils
import select
import socket
import ssl
import time

import pytest
import pytest_twisted
from twisted.application.internet import TimerService
from twisted.application.service import MultiService
from twisted.internet import defer, reactor, threads

from resgate.config import Config
from resgate.service import GatewayService, listen_description
from tests.rig.aio import eventually, sleep, within
from tests.rig.http import http_request
from tests.rig.process import free_port, refuses_connections
from tests.rig.tls import write_self_signed_cert
from tests.rig.ws import connect_ws


class Ticker(TimerService):
    """The host application's own service: counts ticks while it runs."""

    def __init__(self) -> None:
        self.ticks = 0
        super().__init__(0.02, self._tick)

    def _tick(self) -> None:
        self.ticks += 1

    async def ticks_on(self) -> None:
        before = self.ticks
        for _ in range(100):
            await sleep(0.02)
            if self.ticks > before + 2:
                return
        raise AssertionError("the host's own service stopped ticking")


@pytest_twisted.ensureDeferred
async def test_listens_after_nats_is_connected_and_stops_in_reverse(gateway_factory):
    gateway = await gateway_factory()
    assert gateway.mq.is_connected
    response = await http_request("GET", f"http://127.0.0.1:{gateway.port}/nothing")
    assert response.status == 404
    assert response.json() == {"code": "system.notFound", "message": "Not found"}
    port = gateway.port

    await within(gateway.stopService())
    assert refuses_connections(port)
    assert not gateway.mq.is_connected


@pytest_twisted.ensureDeferred
async def test_unreachable_nats_fails_start_without_listening():
    dead = free_port()
    listen_port = free_port()
    config = Config(nats_url=f"nats://127.0.0.1:{dead}", addr="127.0.0.1", port=listen_port)
    gateway = GatewayService(config)
    reasons = []
    gateway.on_fatal = reasons.append
    gateway.startService()
    with pytest.raises(Exception) as caught:
        await within(gateway.when_started(), 15)
    assert str(dead) in str(caught.value)
    assert len(reasons) == 1 and "\n" not in reasons[0] and str(dead) in reasons[0]
    assert not gateway.running
    assert gateway.port is None
    assert refuses_connections(listen_port)
    await within(gateway.stopService())


class HostApplication(MultiService):
    """Someone else's Twisted application: its own Ticker, plus a gateway."""

    def __init__(self, nats_url: str) -> None:
        super().__init__()
        self.ticker = Ticker()
        self.ticker.setServiceParent(self)
        self.gateway = GatewayService(Config(nats_url=nats_url, addr="127.0.0.1", port=0))
        self.fatal_reasons: list[str] = []
        self.gateway.on_fatal = self.fatal_reasons.append
        self.gateway.setServiceParent(self)


@pytest_twisted.ensureDeferred
async def test_host_application_outlives_a_gateway_that_cannot_start():
    host = HostApplication(f"nats://127.0.0.1:{free_port()}")
    gateway, ticker = host.gateway, host.ticker
    host.startService()
    try:
        with pytest.raises(Exception):
            await within(gateway.when_started(), 15)
        assert reactor.running and host.running and ticker.running
        await ticker.ticks_on()
    finally:
        await within(host.stopService())


@pytest_twisted.ensureDeferred
async def test_host_application_outlives_stopping_the_gateway(nats_server):
    host = HostApplication(nats_server.url)
    gateway, ticker = host.gateway, host.ticker
    host.startService()
    try:
        await within(gateway.when_started(), 15)
        port = gateway.port
        await within(gateway.disownServiceParent())
        assert refuses_connections(port)
        assert reactor.running and host.running
        await ticker.ticks_on()
    finally:
        await within(host.stopService())


@pytest_twisted.ensureDeferred
async def test_host_application_outlives_losing_nats(private_nats_server):
    host = HostApplication(private_nats_server.url)
    gateway, ticker = host.gateway, host.ticker
    host.startService()
    try:
        await within(gateway.when_started(), 15)
        private_nats_server.kill()
        await eventually(lambda: not gateway.context.available)
        # The gateway waits for NATS to come back; nothing else stops.
        assert gateway.running and not host.fatal_reasons
        assert reactor.running and host.running
        await ticker.ticks_on()
        private_nats_server.start()
        await eventually(lambda: gateway.context.available, 15)
        await ticker.ticks_on()
    finally:
        await within(host.stopService())


@pytest_twisted.ensureDeferred
async def test_embedded_nats_starts_first_and_stops_last():
    nats_port = free_port()
    config = Config(nats_url=f"nats://127.0.0.1:{nats_port}", embed_nats=True, addr="127.0.0.1", port=0)
    gateway = GatewayService(config)
    gateway.startService()
    await within(gateway.when_started(), 20)
    assert gateway.mq.is_connected
    assert not refuses_connections(nats_port)
    await within(gateway.stopService(), 20)
    assert refuses_connections(nats_port)


@pytest_twisted.ensureDeferred
async def test_tls_serves_https(nats_server, tmp_path):
    cert, key = write_self_signed_cert(tmp_path)
    gateway = GatewayService(
        Config(nats_url=nats_server.url, addr="127.0.0.1", port=0, tls=True, tls_cert=cert, tls_key=key)
    )
    gateway.startService()
    await within(gateway.when_started(), 15)
    context = ssl.create_default_context(cafile=cert)

    def fetch() -> bytes:
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"GET /nothing HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                return tls.recv(64)

    try:
        head = await within(threads.deferToThread(fetch), 10)
        assert head.startswith(b"HTTP/1.1 404")
    finally:
        await within(gateway.stopService())


@pytest.mark.parametrize(
    "settings, expected",
    [
        ({"addr": "127.0.0.1", "port": 8080}, "tcp:port=8080:interface=127.0.0.1:backlog=65535"),
        ({"addr": "::1", "port": 8080}, r"tcp:port=8080:interface=\:\:1:backlog=65535"),
        ({"addr": "", "port": 80}, r"tcp:port=80:interface=\:\::backlog=65535"),
        (
            {"addr": "0.0.0.0", "port": 443, "tls": True, "tls_cert": "/c:x.pem", "tls_key": "k.pem"},
            "tcp:port=443:interface=0.0.0.0:backlog=65535",
        ),
    ],
)
def test_listen_description(settings, expected):
    assert listen_description(Config(**settings)) == expected


#: More clients than Twisted's default listen backlog (50) lets wait for an accept.
BURST_OF_CLIENTS = 200


@pytest.mark.skipif(int(open("/proc/sys/net/core/somaxconn").read()) < BURST_OF_CLIENTS,
                    reason="the kernel's somaxconn caps every listen backlog below the burst")
@pytest_twisted.ensureDeferred
async def test_a_burst_of_clients_waits_in_the_kernel_until_accepted(gateway_factory):
    gateway = await gateway_factory()
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(BURST_OF_CLIENTS)]
    try:
        # The reactor does not run until this test yields: the gateway accepts
        # none of these meanwhile, so each must find room in the listen backlog.
        for client in sockets:
            client.setblocking(False)
            client.connect_ex(("127.0.0.1", gateway.port))
        pending = set(sockets)
        deadline = time.monotonic() + 10
        while pending and time.monotonic() < deadline:
            _, connected, _ = select.select([], list(pending), [], 0.1)
            pending.difference_update(connected)
        assert not pending
        assert all(client.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0 for client in sockets)
    finally:
        for client in sockets:
            client.close()


@pytest_twisted.ensureDeferred
async def test_stopping_closes_websockets_with_going_away(gateway_factory):
    gateway = await gateway_factory()
    client = await connect_ws(gateway.ws_url)
    await within(gateway.stopService(), 10)
    assert await within(client.closed, 10) == 1001


@pytest_twisted.ensureDeferred
async def test_stopping_ends_in_flight_http_requests(gateway_factory, fake_service):
    gateway = await gateway_factory()
    pending = defer.ensureDeferred(http_request("GET", gateway.api_url + "test/model", timeout=10))
    await fake_service.take("access.test.model", "get.test.model")  # left unanswered
    await within(gateway.stopService(), 10)
    response = await pending
    assert response.status >= 500
    assert response.json()["code"] == "system.internalError"



@pytest_twisted.ensureDeferred
async def test_http_connections_have_no_idle_timeout(gateway, fake_service):
    """As Resgate (Go's http.Server without timeouts): no idle timer to re-arm per request."""
    fake_service.on("access.test.model", lambda r: r.respond_result({"get": True}))
    fake_service.on("get.test.model", lambda r: r.respond_result({"model": {"n": 1}}))
    idle_timeouts = []
    build = gateway.site.buildProtocol

    def build_and_note(addr):
        channel = build(addr)
        idle_timeouts.append(channel.timeOut)
        return channel

    gateway.site.buildProtocol = build_and_note

    def get_twice() -> list[bytes]:
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as sock:
            answers = []
            for _ in range(2):
                sock.sendall(b"GET /api/test/model HTTP/1.1\r\nHost: x\r\n\r\n")
                answer = b""
                while not answer.endswith(b'{"n":1}'):
                    answer += sock.recv(4096)
                answers.append(answer.split(b"\r\n")[0])
            return answers

    assert await within(threads.deferToThread(get_twice)) == [b"HTTP/1.1 200 OK"] * 2
    assert idle_timeouts == [None]


@pytest_twisted.ensureDeferred
async def test_responses_have_a_date_and_no_server_header(gateway):
    """As Go's net/http in Resgate: Date on every response, no Server header."""
    response = await http_request("GET", gateway.api_url.replace("/api/", "/nothing"))
    assert response.status == 404
    date = response.headers["date"]
    assert len(date) == 1
    sent = email.utils.parsedate_to_datetime(date[0])
    assert abs(sent.timestamp() - time.time()) < 5
    assert "server" not in response.headers


@pytest_twisted.ensureDeferred
async def test_a_nats_py_that_skips_the_dispatch_hook_fails_start_without_listening(nats_server, monkeypatch):
    """If nats-py's parser stopped calling the gateway's hook, every request would time out
    silently; the connect-time self-test makes the gateway refuse to serve instead."""
    import nats.aio.client

    from resgate import natsbus

    async def parser_skips_the_hook(self, sid, subject, reply, data, headers):
        await nats.aio.client.Client._process_msg(self, sid, subject, reply, data, headers)

    monkeypatch.setattr(natsbus._OrderedClient, "_process_msg", parser_skips_the_hook)
    monkeypatch.setattr(natsbus, "SELF_TEST_TIMEOUT", 0.5)
    listen_port = free_port()
    gateway = GatewayService(Config(nats_url=nats_server.url, addr="127.0.0.1", port=listen_port))
    reasons = []
    gateway.on_fatal = reasons.append
    gateway.startService()
    with pytest.raises(Exception) as caught:
        await within(gateway.when_started(), 15)
    assert "dispatch hook" in str(caught.value)
    assert len(reasons) == 1 and "\n" not in reasons[0] and "dispatch hook" in reasons[0]
    assert gateway.port is None
    assert refuses_connections(listen_port)
    await within(gateway.stopService())


@pytest.mark.parametrize("broken", ["missing certificate", "missing key", "certificate not PEM",
                                    "key not PEM", "empty certificate", "key of another certificate"])
@pytest_twisted.ensureDeferred
async def test_unreadable_tls_files_fail_start_in_one_line_without_listening(nats_server, tmp_path, broken):
    cert, key = write_self_signed_cert(tmp_path)
    (tmp_path / "other").mkdir()
    _, other_key = write_self_signed_cert(tmp_path / "other")
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"-----BEGIN NOTHING-----\n\x00\xff\n" * 3)
    empty = tmp_path / "empty.pem"
    empty.write_bytes(b"")
    cert, key = {
        "missing certificate": (str(tmp_path / "nope.pem"), key),
        "missing key": (cert, str(tmp_path / "nope.key")),
        "certificate not PEM": (str(garbage), key),
        "key not PEM": (cert, str(garbage)),
        "empty certificate": (str(empty), key),
        "key of another certificate": (cert, other_key),
    }[broken]
    listen_port = free_port()
    gateway = GatewayService(Config(nats_url=nats_server.url, addr="127.0.0.1", port=listen_port,
                                    tls=True, tls_cert=cert, tls_key=key))
    reasons = []
    gateway.on_fatal = reasons.append
    gateway.startService()
    with pytest.raises(Exception):
        await within(gateway.when_started(), 15)
    assert len(reasons) == 1 and "\n" not in reasons[0], reasons
    named = {"missing certificate": "nope.pem", "missing key": "nope.key", "certificate not PEM": "garbage.pem",
             "key not PEM": "garbage.pem", "empty certificate": "empty.pem", "key of another certificate": "other"}
    assert named[broken] in reasons[0], reasons
    assert refuses_connections(listen_port)
    await within(gateway.stopService())
