"""OpenMetrics on --metricsport: Resgate's names, parsed with prometheus_client's parser.

Upstream test/33metrics_test.go, metric parts:

| upstream function | pytest test |
| --- | --- |
| TestMetrics_DefaultResponse_ContainsExpectedValues | test_default_response_has_resgates_metrics |
| TestMetrics_WSCurrentConnections_IncreasesOnConnect | test_ws_connections_follow_connects_and_disconnects |
| TestMetrics_WSCurrentConnections_DecreasesOnDisconnect | test_ws_connections_follow_connects_and_disconnects |
| TestMetrics_WSCurrentConnectionsMultiple_IncreasesOnEachConnect | test_ws_connections_follow_connects_and_disconnects |
| TestMetrics_WSRequests_* (get, subscribe, unsubscribe, call, auth, new) | test_ws_requests_are_counted_by_method |
| TestMetrics_HTTPRequests_* (GET, HEAD, POST, PUT/DELETE/PATCH) | test_http_requests_are_counted_by_method |
| TestMetrics_CacheResources_*, TestMetrics_CacheSubscriptions_* | test_cache_gauges_follow_subscriptions |

Upstream reports go_info and go_memstats_sys_bytes; a Python gateway reports
python_info and process_resident_memory_bytes instead.
"""

from __future__ import annotations

import urllib.request

import pytest_twisted
from prometheus_client.openmetrics.parser import text_string_to_metric_families

import resgate
from tests.rig.aio import eventually
from tests.rig.http import http_request, scrape_metrics
from tests.rig.process import GatewayProcess, free_port
from tests.rig.ws import connect_ws


async def scrape(gateway) -> dict[tuple[str, tuple], float]:
    return await scrape_metrics(gateway.config.metrics_port)


async def metrics_gateway(gateway_factory, **settings):
    return await gateway_factory(metrics_port=free_port(), unsubscribe_delay=0, **settings)


@pytest_twisted.ensureDeferred
async def test_default_response_has_resgates_metrics(gateway_factory):
    gateway = await metrics_gateway(gateway_factory)
    samples = await scrape(gateway)
    version = (("protocol", resgate.PROTOCOL_VERSION), ("version", resgate.__version__))
    assert samples[("resgate_info", version)] == 1
    assert samples[("process_resident_memory_bytes", ())] > 0
    for name in ("resgate_ws_current_connections", "resgate_ws_connections_total",
                 "resgate_cache_resources", "resgate_cache_subscriptions"):
        assert samples[(name, ())] == 0, name
    for method in ("get", "subscribe", "unsubscribe", "call", "auth"):
        assert samples[("resgate_ws_requests_total", (("method", method),))] == 0
    for method in ("GET", "POST"):
        assert samples[("resgate_http_requests_total", (("method", method),))] == 0


@pytest_twisted.ensureDeferred
async def test_metrics_port_serves_only_metrics(gateway_factory):
    gateway = await metrics_gateway(gateway_factory)
    response = await http_request("GET", f"http://127.0.0.1:{gateway.config.metrics_port}/other")
    assert response.status == 404


@pytest_twisted.ensureDeferred
async def test_ws_connections_follow_connects_and_disconnects(gateway_factory):
    gateway = await metrics_gateway(gateway_factory)
    first = await connect_ws(gateway.ws_url)
    await connect_ws(gateway.ws_url)
    await first.close()
    await connect_ws(gateway.ws_url)

    async def connections():
        samples = await scrape(gateway)
        return samples[("resgate_ws_current_connections", ())], samples[("resgate_ws_connections_total", ())]

    for _ in range(100):
        if await connections() == (2, 3):
            break
    assert await connections() == (2, 3)


@pytest_twisted.ensureDeferred
async def test_ws_requests_are_counted_by_method(gateway_factory, fake_service):
    gateway = await metrics_gateway(gateway_factory)
    fake_service.on("access.test.model", lambda r: r.respond_result({"get": True, "call": "*"}))
    fake_service.on("get.test.model", lambda r: r.respond_result({"model": {"a": 1}}))
    fake_service.on("call.test.model.set", lambda r: r.respond_result(None))
    fake_service.on("call.test.model.new", lambda r: r.respond({"resource": {"rid": "test.model"}}))
    fake_service.on("auth.test.model.login", lambda r: r.respond_result(None))
    client = await connect_ws(gateway.ws_url)
    await client.request("version", {"protocol": "1.2.3"})
    await client.request("get.test.model")
    await client.request("subscribe.test.model")
    await client.request("unsubscribe.test.model")
    await client.request("call.test.model.set")
    await client.request("new.test.model")
    await client.request("auth.test.model.login")
    samples = await scrape(gateway)
    counted = {m: samples[("resgate_ws_requests_total", (("method", m),))]
               for m in ("get", "subscribe", "unsubscribe", "call", "auth")}
    # As in Resgate, new is a call.
    assert counted == {"get": 1, "subscribe": 1, "unsubscribe": 1, "call": 2, "auth": 1}


@pytest_twisted.ensureDeferred
async def test_http_requests_are_counted_by_method(gateway_factory, fake_service):
    gateway = await metrics_gateway(gateway_factory, put_method="set")
    fake_service.on("access.test.model", lambda r: r.respond_result({"get": True, "call": "*"}))
    fake_service.on("get.test.model", lambda r: r.respond_result({"model": {"a": 1}}))
    fake_service.on("call.test.model.set", lambda r: r.respond_result(None))
    fake_service.on("call.test.model.method", lambda r: r.respond_result(None))
    url = gateway.api_url + "test/model"
    assert (await http_request("GET", url)).status == 200
    assert (await http_request("HEAD", url)).status == 200
    assert (await http_request("POST", url + "/method")).status == 204
    assert (await http_request("PUT", url)).status == 204
    samples = await scrape(gateway)
    assert samples[("resgate_http_requests_total", (("method", "GET"),))] == 2
    assert samples[("resgate_http_requests_total", (("method", "POST"),))] == 1
    assert samples[("resgate_http_requests_total", (("method", "PUT"),))] == 1


@pytest_twisted.ensureDeferred
async def test_cache_gauges_follow_subscriptions(gateway_factory, fake_service):
    gateway = await metrics_gateway(gateway_factory)
    fake_service.on("access.test.parent", lambda r: r.respond_result({"get": True}))
    fake_service.on("get.test.parent", lambda r: r.respond_result({"model": {"child": {"rid": "test.child"}}}))
    fake_service.on("get.test.child", lambda r: r.respond_result({"model": {"a": 1}}))
    first = await connect_ws(gateway.ws_url)
    second = await connect_ws(gateway.ws_url)
    await first.request("subscribe.test.parent")
    await second.request("subscribe.test.parent")
    samples = await scrape(gateway)
    assert samples[("resgate_cache_resources", ())] == 2
    # Two connections each hold the parent and, through it, the child.
    assert samples[("resgate_cache_subscriptions", ())] == 4

    await first.close()
    await second.request("unsubscribe.test.parent")

    async def gauges():
        samples = await scrape(gateway)
        return samples[("resgate_cache_resources", ())], samples[("resgate_cache_subscriptions", ())]

    await eventually(lambda: not gateway.cache.names)
    assert await gauges() == (0, 0)


def test_metrics_port_is_served_by_the_console_script():
    metrics_port = free_port()
    process = GatewayProcess("--embed-nats", "-n", f"nats://127.0.0.1:{free_port()}", "-i", "127.0.0.1",
                             "-p", str(free_port()), "-m", str(metrics_port))
    try:
        process.wait_listening()
        assert f"Metrics listening on 127.0.0.1:{metrics_port}" in process.output()
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
            text = response.read().decode()
        families = {f.name for f in text_string_to_metric_families(text)}
        assert {"resgate", "resgate_ws_connections", "resgate_cache_resources"} <= families
        assert process.stop() == 0
    finally:
        process.cleanup()
