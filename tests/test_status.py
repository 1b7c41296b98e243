"""/status.json and the status page's files on --metricsport: real gateway, real clients over loopback.

The JSON's shape, its numbers following clients, subscriptions, events,
faults and NATS loss; rates and the chart's history stepped on a fake
clock; no token, header or query of any client anywhere in what the
metrics port serves; hostile requests on the new paths; nothing of it on
the client port. The page in a browser: tests/test_status_page.py.
"""

from __future__ import annotations

import socket

import pytest_twisted

import resgate
from resgate.service import GatewayService
from resgate.status import HISTORY, TOP_RESOURCES
from tests.rig.aio import eventually, sleep
from tests.rig.buses import ON_MEMORY_BUS, OVER_BOTH_BUSES
from tests.rig.clock import ClockedReactor
from tests.rig.http import HttpResponse, http_request
from tests.rig.process import free_port
from tests.rig.ws import connect_ws

#: What the status page serves, besides /metrics and the probes.
PAGE_PATHS = ("/", "/status.json", "/status.js", "/status.css", "/favicon.svg")
#: NATS loss and reconnection: as /readyz's tests bound them, loosely.
RECONNECT_BOUND = 15.0


async def status_gateway(gateway_factory, **settings: object) -> GatewayService:
    settings.setdefault("unsubscribe_delay", 0)
    return await gateway_factory(metrics_port=free_port(), **settings)


async def get(gateway: GatewayService, path: str, method: str = "GET", **options: object) -> HttpResponse:
    return await http_request(method, f"http://127.0.0.1:{gateway.config.metrics_port}{path}", **options)


async def status(gateway: GatewayService) -> dict:
    response = await get(gateway, "/status.json")
    assert response.status == 200, response
    assert response.header("content-type") == "application/json"
    assert response.header("cache-control") == "no-store"
    return response.json()


async def status_becomes(gateway: GatewayService, check, seconds: float = 10.0) -> dict:
    """Poll /status.json until ``check(status)`` holds; fails after ``seconds``."""
    from twisted.internet import reactor

    deadline = reactor.seconds() + seconds
    while True:
        current = await status(gateway)
        if check(current):
            return current
        if reactor.seconds() > deadline:
            raise AssertionError(f"status not as expected after {seconds}s: {current}")
        await sleep(0.05)


def serve_models(service, *rids: str) -> None:
    """The fake service grants access to and serves a small model for each of ``rids``."""
    for rid in rids:
        service.on(f"access.{rid}", lambda r: r.respond_result({"get": True}))
        service.on(f"get.{rid}", lambda r: r.respond_result({"model": {"n": 1}}))


async def subscribe(client, rid: str) -> None:
    response = await client.request(f"subscribe.{rid}")
    assert "result" in response, response


# --- shape and values, over both buses --------------------------------------------------

@OVER_BOTH_BUSES
@pytest_twisted.ensureDeferred
async def test_status_has_every_field_at_start(gateway_factory, bus_kind, nats_server):
    gateway = await status_gateway(gateway_factory)
    current = await status(gateway)
    assert set(current) == {"version", "protocol", "uptime", "workers", "ready", "notReadyReason",
                            "nats", "clients", "cache", "traffic", "faults", "history"}
    assert (current["version"], current["protocol"]) == (resgate.__version__, resgate.PROTOCOL_VERSION)
    assert current["uptime"] >= 0 and current["workers"] == 1
    assert (current["ready"], current["notReadyReason"]) == (True, None)
    server = "memory" if bus_kind == "memory" else nats_server.url
    assert current["nats"] == {"connected": True, "server": server, "reconnects": 0, "lastLoss": None}
    assert current["clients"] == {"websocket": 0, "http": 0, "connectsPerSecond": 0.0,
                                  "disconnectsPerSecond": 0.0, "connectsTotal": 0, "disconnectsTotal": 0,
                                  "slowClientsCutOff": 0, "refusedPastCaps": 0}
    assert current["cache"] == {"resources": 0, "subscriptions": 0, "mostSubscribed": []}
    assert current["traffic"] == {"eventsPerSecond": 0.0, "requestsPerSecond": 0.0,
                                  "eventsTotal": 0, "requestsTotal": 0}
    assert current["faults"] == {"window": 10.0, "total": 0, "recent": []}
    assert (current["history"]["interval"], current["history"]["capacity"]) == (1.0, HISTORY)
    assert all(isinstance(n, int) for n in current["history"]["connections"])


@OVER_BOTH_BUSES
@pytest_twisted.ensureDeferred
async def test_numbers_follow_clients_subscriptions_and_events(gateway_factory, fake_service):
    gateway = await status_gateway(gateway_factory)
    serve_models(fake_service, "test.popular", "test.quiet")
    clients = [await connect_ws(gateway.ws_url) for _ in range(3)]
    for client in clients[:2]:
        await subscribe(client, "test.popular")
    await subscribe(clients[2], "test.quiet")
    current = await status(gateway)
    assert current["clients"]["websocket"] == 3
    assert current["clients"]["connectsTotal"] == 3
    assert current["clients"]["http"] == 0, "an upgraded connection is no longer an HTTP one"
    assert current["cache"]["resources"] == 2
    assert current["cache"]["subscriptions"] == 3
    assert current["cache"]["mostSubscribed"] == [{"name": "test.popular", "subscriptions": 2},
                                                  {"name": "test.quiet", "subscriptions": 1}]
    assert current["traffic"]["requestsTotal"] == 3

    for n in range(5):
        fake_service.event("test.popular", "custom", {"n": n})
    await fake_service.flush()
    await status_becomes(gateway, lambda s: s["traffic"]["eventsTotal"] == 5)

    await clients[2].close()
    after = await status_becomes(gateway, lambda s: s["clients"]["disconnectsTotal"] == 1)
    assert after["clients"]["websocket"] == 2
    await eventually(lambda: "test.quiet" not in gateway.cache.names)
    after = await status(gateway)
    assert after["cache"]["mostSubscribed"] == [{"name": "test.popular", "subscriptions": 2}]


@OVER_BOTH_BUSES
@pytest_twisted.ensureDeferred
async def test_most_subscribed_lists_the_top_ten_most_first(gateway_factory, fake_service):
    gateway = await status_gateway(gateway_factory)
    rids = [f"test.r{i}" for i in range(TOP_RESOURCES + 2)]
    serve_models(fake_service, *rids)
    # Client i holds r0 ... ri: r0 has the most subscriptions, the last rid one.
    for i in range(len(rids)):
        client = await connect_ws(gateway.ws_url)
        for rid in rids[:i + 1]:
            await subscribe(client, rid)
    top = (await status(gateway))["cache"]["mostSubscribed"]
    assert top == [{"name": rid, "subscriptions": len(rids) - i} for i, rid in enumerate(rids[:TOP_RESOURCES])]


@OVER_BOTH_BUSES
@pytest_twisted.ensureDeferred
async def test_open_http_connections_are_counted_until_they_close(gateway_factory):
    gateway = await status_gateway(gateway_factory)
    idle = [socket.create_connection(("127.0.0.1", gateway.port), timeout=5) for _ in range(2)]
    try:
        # Two idle sockets on the client port; the status request is on the metrics port.
        await status_becomes(gateway, lambda s: s["clients"]["http"] == 2)
        idle.pop().close()
        await status_becomes(gateway, lambda s: s["clients"]["http"] == 1)
    finally:
        for sock in idle:
            sock.close()
    await status_becomes(gateway, lambda s: s["clients"]["http"] == 0)


@pytest_twisted.ensureDeferred
async def test_service_faults_of_the_last_window(gateway_factory, fake_service):
    gateway = await status_gateway(gateway_factory, request_timeout=1000)
    fake_service.on("access.test.slow", lambda r: r.respond_result({"get": True}))
    fake_service.on("get.test.slow", lambda r: None)  # never answered: a timeout
    fake_service.on("access.test.broken", lambda r: r.respond_result({"get": True}))
    fake_service.on("get.test.broken", lambda r: r.respond(b"{not json"))
    client = await connect_ws(gateway.ws_url)
    for rid in ("test.slow", "test.broken", "test.broken"):
        response = await client.request(f"subscribe.{rid}")
        assert "error" in response, response
    faults = (await status(gateway))["faults"]
    assert faults["total"] == 3
    assert sorted(faults["recent"], key=lambda f: f["what"]) == [
        {"what": "Invalid response to", "requests": "get.test", "count": 2},
        {"what": "Request timeout on", "requests": "get.test", "count": 1},
    ]


@pytest_twisted.ensureDeferred
async def test_nats_loss_and_reconnection_are_shown(private_nats_server, gateway_factory):
    gateway = await status_gateway(gateway_factory, nats_url=private_nats_server.url)
    private_nats_server.kill()
    lost = await status_becomes(gateway, lambda s: s["nats"]["lastLoss"] is not None)
    assert lost["nats"]["lastLoss"]["reason"].startswith("lost NATS connection: ")
    assert lost["nats"]["connected"] is False and lost["nats"]["server"] is None
    assert lost["ready"] is False and lost["notReadyReason"].endswith("; reconnecting to NATS")

    private_nats_server.start()
    back = await status_becomes(gateway, lambda s: s["nats"]["reconnects"] == 1, RECONNECT_BOUND)
    assert back["nats"]["connected"] is True
    assert back["nats"]["server"] == private_nats_server.url
    assert back["nats"]["lastLoss"] == lost["nats"]["lastLoss"]


# --- rates and history on a fake clock ------------------------------------------------------

@ON_MEMORY_BUS
@pytest_twisted.ensureDeferred
async def test_rates_and_history_are_sampled_each_second(gateway_factory, fake_service):
    clocked = ClockedReactor()
    gateway = await status_gateway(gateway_factory, reactor=clocked)
    serve_models(fake_service, "test.model")
    client = await connect_ws(gateway.ws_url)
    await subscribe(client, "test.model")
    for n in range(4):
        fake_service.event("test.model", "custom", {"n": n})
    await eventually(lambda: gateway.cache.events_received == 4)
    clocked.advance(1)
    current = await status(gateway)
    # Since the first sample (at start): 1 connect, 1 request and 4 events in one second.
    assert current["clients"]["connectsPerSecond"] == 1.0
    assert current["traffic"]["requestsPerSecond"] == 1.0
    assert current["traffic"]["eventsPerSecond"] == 4.0
    assert current["history"]["connections"] == [1]
    assert current["history"]["eventsPerSecond"] == [4.0]

    clocked.advance(1)
    current = await status(gateway)
    assert current["traffic"]["eventsPerSecond"] == 2.0, "4 events over the last two seconds"
    assert current["history"]["eventsPerSecond"] == [4.0, 0.0]

    for _ in range(HISTORY + 20):
        clocked.advance(1)
    current = await status(gateway)
    assert current["traffic"]["eventsPerSecond"] == 0.0
    assert current["clients"]["connectsPerSecond"] == 0.0
    assert len(current["history"]["connections"]) == HISTORY
    assert current["history"]["connections"][-1] == 1
    assert current["uptime"] == HISTORY + 22


# --- no secrets ------------------------------------------------------------------------------

TOKEN_SECRET = "tok-3e8a1f-never-shown"
HEADER_SECRET = "Bearer hdr-77c2-never-shown"
QUERY_SECRET = "q-91d0-never-shown"
NATS_SECRET = "natspass-5b6e"


@pytest_twisted.ensureDeferred
async def test_no_token_header_query_or_nats_password_is_served(nats_server, gateway_factory, fake_service):
    # nats-server without auth takes any user and password: the URL carries one all the same.
    url = nats_server.url.replace("nats://", f"nats://gateway:{NATS_SECRET}@")
    gateway = await status_gateway(gateway_factory, nats_url=url)
    fake_service.on("auth.test.login", lambda r: r.respond({"result": None, "token": {"secret": TOKEN_SECRET}}))
    fake_service.on("access.test.model", lambda r: r.respond_result({"get": True}))
    fake_service.on("get.test.model", lambda r: r.respond_result({"model": {"n": 1}, "query": f"s={QUERY_SECRET}"}))
    client = await connect_ws(gateway.ws_url, headers={"Authorization": HEADER_SECRET})
    response = await client.request("auth.test.login", {"password": TOKEN_SECRET})
    assert "error" not in response, response
    response = await client.request(f"subscribe.test.model?s={QUERY_SECRET}")
    assert "result" in response, response
    over_http = await http_request("GET", f"{gateway.api_url}test/model?s={QUERY_SECRET}",
                                   headers={"Authorization": HEADER_SECRET})
    assert over_http.status == 200

    current = await status(gateway)
    assert current["cache"]["mostSubscribed"] == [{"name": "test.model", "subscriptions": 1}]
    assert current["nats"]["server"].startswith("nats://***@")
    served = b"".join([(await get(gateway, path)).body for path in PAGE_PATHS + ("/metrics",)])
    for secret in (TOKEN_SECRET, HEADER_SECRET, "hdr-77c2", QUERY_SECRET, NATS_SECRET):
        assert secret.encode() not in served, secret


# --- hostile input ---------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_hostile_requests_on_the_page_paths_get_4xx_and_change_nothing(gateway_factory):
    gateway = await status_gateway(gateway_factory)
    for path in PAGE_PATHS:
        for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "BREW"):
            response = await get(gateway, path, method)
            assert response.status == 405, (path, method)
            assert response.header("allow") == "GET, HEAD"
        for query in ("?=", "?refresh=1", "?x=" + "a" * 4000, "?<script>alert(1)</script>"):
            assert (await get(gateway, path + query)).status == 400, (path, query)
        assert (await get(gateway, path, body=b"{}")).status == 400
        assert (await get(gateway, path, body=b"x" * 100_000)).status == 400
        huge_header = await get(gateway, path, headers={"X-Huge": "a" * 20_000})
        assert huge_header.status == 431, path
        many_headers = await get(gateway, path, headers={f"X-H{i}": "v" for i in range(600)})
        assert 400 <= many_headers.status < 500, path
        head = await get(gateway, path, "HEAD")
        assert (head.status, head.body) == (200, b"")
    too_long = await get(gateway, "/status.json" + "x" * 20_000)
    assert too_long.status == 414
    for near in ("/status.json/", "/STATUS.JSON", "/status", "/index.html", "//", "/static/status.js",
                 "/../status.json", "/status.js%00", "/status.html"):
        assert (await get(gateway, near)).status == 404, near
    current = await status(gateway)
    assert current["traffic"]["requestsTotal"] == 0
    assert gateway.metrics.http_requests == {"GET": 0, "POST": 0}


@pytest_twisted.ensureDeferred
async def test_page_files_are_served_with_a_strict_policy(gateway_factory):
    gateway = await status_gateway(gateway_factory)
    types = {"/": "text/html; charset=utf-8", "/status.js": "text/javascript; charset=utf-8",
             "/status.css": "text/css; charset=utf-8", "/status.json": "application/json",
             "/favicon.svg": "image/svg+xml"}
    for path, content_type in types.items():
        response = await get(gateway, path)
        assert response.status == 200
        assert response.header("content-type") == content_type
        assert response.header("x-content-type-options") == "nosniff"
        policy = response.header("content-security-policy")
        assert "default-src 'none'" in policy and "script-src 'self'" in policy
        assert "frame-ancestors 'none'" in policy
    page = (await get(gateway, "/")).body
    # Nothing from outside the gateway.
    assert b"http://" not in page and b"https://" not in page and b"//cdn" not in page
    assert b'src="/status.js"' in page and b'href="/status.css"' in page


@pytest_twisted.ensureDeferred
async def test_nothing_of_the_status_page_is_on_the_client_port(gateway_factory):
    gateway = await status_gateway(gateway_factory)
    for path in PAGE_PATHS[1:]:
        response = await http_request("GET", f"http://127.0.0.1:{gateway.port}{path}")
        assert response.status == 404, path
    # "/" on the client port is the WebSocket path, as before.
    root = await http_request("GET", f"http://127.0.0.1:{gateway.port}/")
    assert b"resgate status" not in root.body and b"status.js" not in root.body


@pytest_twisted.ensureDeferred
async def test_without_a_metrics_port_nothing_samples(gateway_factory):
    gateway = await gateway_factory()
    assert not gateway.status.running
    assert gateway.status not in list(gateway)
