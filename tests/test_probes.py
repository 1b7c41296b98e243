"""/healthz and /readyz on --metricsport: a real gateway, a real nats-server, treq over loopback.

Readiness follows what a new client would meet: 503 within a second of
NATS loss, 200 again once reconnected, 503 from the start of shutdown
while the client port still accepts. Liveness is 200 throughout.
"""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

import pytest_twisted
from twisted.internet import defer

from resgate.probes import Readiness
from resgate.service import GatewayService
from tests.rig.aio import sleep, within
from tests.rig.http import HttpResponse, http_request
from tests.rig.process import GatewayProcess, free_port
from tests.rig.ws import connect_ws

#: The issue's bound: readiness follows NATS loss within a second.
LOSS_BOUND = 1.0
#: Reconnecting waits out the backoff and a fresh connect: a looser bound.
RECONNECT_BOUND = 15.0
POLL_INTERVAL = 0.02


def probe_url(gateway: GatewayService, path: str) -> str:
    return f"http://127.0.0.1:{gateway.config.metrics_port}{path}"


async def probe(gateway: GatewayService, path: str, method: str = "GET", **options: object) -> HttpResponse:
    return await http_request(method, probe_url(gateway, path), **options)


async def ready_becomes(gateway: GatewayService, status: int, seconds: float) -> HttpResponse:
    """Poll /readyz until it answers ``status``; fails after ``seconds``."""
    from twisted.internet import reactor

    deadline = reactor.seconds() + seconds
    while True:
        response = await probe(gateway, "/readyz")
        if response.status == status:
            return response
        if reactor.seconds() > deadline:
            raise AssertionError(f"/readyz still {response.status} {response.body!r} after {seconds}s")
        await sleep(POLL_INTERVAL)


async def probes_gateway(gateway_factory, **settings: object) -> GatewayService:
    return await gateway_factory(metrics_port=free_port(), **settings)


def assert_probe_headers(response: HttpResponse) -> None:
    assert response.header("cache-control") == "no-store"
    assert response.header("content-type") == "text/plain; charset=utf-8"


def test_readiness_names_the_first_thing_missing() -> None:
    state = {"connected": False, "listening": False}
    readiness = Readiness(lambda: state["connected"], lambda: state["listening"])
    assert readiness.reason() == "not connected to NATS"
    state["connected"] = True
    assert readiness.reason() == "client listener not listening"
    state["listening"] = True
    assert readiness.reason() is None
    readiness.lost_reason = "lost NATS connection: EOF"
    assert readiness.reason() == "lost NATS connection: EOF; reconnecting to NATS"
    readiness.shutting_down = True
    assert readiness.reason() == "shutting down"


@pytest_twisted.ensureDeferred
async def test_both_probes_answer_ok_while_serving(gateway_factory):
    gateway = await probes_gateway(gateway_factory)
    for path in ("/healthz", "/readyz"):
        response = await probe(gateway, path)
        assert (response.status, response.body) == (200, b"ok\n")
        assert_probe_headers(response)
        head = await probe(gateway, path, "HEAD")
        assert (head.status, head.body) == (200, b"")
        assert_probe_headers(head)
    assert (await probe(gateway, "/metrics")).status == 200


@pytest_twisted.ensureDeferred
async def test_readiness_follows_nats_loss_and_reconnection(private_nats_server, gateway_factory):
    gateway = await probes_gateway(gateway_factory, nats_url=private_nats_server.url)
    await ready_becomes(gateway, 200, LOSS_BOUND)

    private_nats_server.kill()
    lost = await ready_becomes(gateway, 503, LOSS_BOUND)
    assert lost.body.startswith(b"lost NATS connection: ")
    assert lost.body.endswith(b"; reconnecting to NATS\n")
    assert lost.body.count(b"\n") == 1
    assert_probe_headers(lost)
    health = await probe(gateway, "/healthz")
    assert (health.status, health.body) == (200, b"ok\n")

    private_nats_server.start()  # the same port: the gateway's URL names it
    await ready_becomes(gateway, 200, RECONNECT_BOUND)
    assert (await probe(gateway, "/healthz")).status == 200
    client = await connect_ws(gateway.ws_url)
    await client.close()


@pytest_twisted.ensureDeferred
async def test_readiness_is_503_before_the_client_listener_stops(gateway_factory):
    gateway = await probes_gateway(gateway_factory)
    seen: dict[str, object] = {}
    stop_listener = gateway.listener.stopService

    async def observe_then_stop() -> None:
        # The client port still accepts here; the metrics port still answers.
        seen["accepting"] = socket.create_connection(("127.0.0.1", gateway.port), timeout=5)
        seen["readyz"] = await probe(gateway, "/readyz")
        seen["healthz"] = await probe(gateway, "/healthz")
        await stop_listener()

    gateway.listener.stopService = lambda: defer.ensureDeferred(observe_then_stop())
    await within(gateway.stopService(), 15)
    seen["accepting"].close()
    assert (seen["readyz"].status, seen["readyz"].body) == (503, b"shutting down\n")
    assert (seen["healthz"].status, seen["healthz"].body) == (200, b"ok\n")


@pytest_twisted.ensureDeferred
async def test_hostile_input_on_the_probes_gets_4xx_and_changes_nothing(gateway_factory):
    gateway = await probes_gateway(gateway_factory)
    for path in ("/healthz", "/readyz"):
        for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS", "BREW"):
            response = await probe(gateway, path, method)
            assert response.status == 405, (path, method)
            assert response.header("allow") == "GET, HEAD"
        for query in ("?verbose", "?a=1", "?x=" + "a" * 4000):
            assert (await probe(gateway, path + query)).status == 400, (path, query)
        assert (await probe(gateway, path, body=b"{}")).status == 400
        assert (await probe(gateway, path, body=b"x" * 100_000)).status == 400
        long = await probe(gateway, path + "/" + "a" * 100_000)
        assert 400 <= long.status < 500
        for near in (path + "/", path + "x", path.upper(), "/" + path):
            assert (await probe(gateway, near)).status == 404, near
    for path in ("/healthz", "/readyz"):
        response = await probe(gateway, path)
        assert (response.status, response.body) == (200, b"ok\n")
    assert gateway.metrics.http_requests == {"GET": 0, "POST": 0}
    assert not gateway.readiness.shutting_down


@pytest_twisted.ensureDeferred
async def test_probes_are_not_on_the_client_port(gateway_factory):
    gateway = await probes_gateway(gateway_factory)
    for path in ("/healthz", "/readyz", "/metrics"):
        response = await http_request("GET", f"http://127.0.0.1:{gateway.port}{path}")
        assert response.status == 404, path


def read_probe(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_probes_of_the_resgate_process() -> None:
    metrics_port = free_port()
    process = GatewayProcess("--embed-nats", "-n", f"nats://127.0.0.1:{free_port()}", "-i", "127.0.0.1",
                             "-p", str(free_port()), "-m", str(metrics_port))
    try:
        process.wait_listening()
        process.wait_output(f"Metrics listening on 127.0.0.1:{metrics_port}")
        assert read_probe(metrics_port, "/healthz") == (200, b"ok\n")
        assert read_probe(metrics_port, "/readyz") == (200, b"ok\n")
        assert process.stop() == 0
    finally:
        process.cleanup()
