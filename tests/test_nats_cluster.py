"""The gateway on a NATS cluster (docs/design.md, invariant 7).

Three nats-server nodes on loopback: two gateways on different nodes, a
service on the third. Clients of both gateways see the same events; when the
node a gateway uses dies, that gateway lets its clients go (their resources
are stale) and connects again through another node, found in its server
list or learned from the cluster; clients that connect and subscribe again
get the service's current state, changes made while they were away included.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.logger import formatEvent, globalLogPublisher

from tests.rig.aio import eventually, within
from tests.rig.nats import ClusterNode, NatsCluster
from tests.rig.service import FakeService
from tests.rig.ws import connect_ws

#: The NATS subject of the model's change events.
EVENT_SUBJECT = "event.test.model.change"


@pytest.fixture
def cluster():
    cluster = NatsCluster(3).start()
    yield cluster
    cluster.cleanup()


@pytest.fixture
def connected_lines():
    """The gateways' "Connected to NATS at ..." log lines during the test."""
    lines: list[str] = []

    def observe(event: dict) -> None:
        if event.get("log_namespace") == "resgate.mq" and event.get("log_format", "").startswith("Connected"):
            lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    yield lines
    globalLogPublisher.removeObserver(observe)


async def model_service(url: str) -> FakeService:
    """A service holding one model; ``service.model`` is its current state."""
    service = await FakeService(url).start()
    service.model = {"greeting": "hello", "count": 0}
    service.on("access.test.model", lambda r: r.respond_result({"get": True}))
    service.on("get.test.model", lambda r: r.respond_result({"model": dict(service.model)}))
    return service


@pytest_twisted.async_yield_fixture
async def service(cluster):
    """The model's service, on the third node."""
    service = await model_service(cluster.nodes[2].url)
    yield service
    await service.stop()


def change(service: FakeService, **values) -> dict:
    """Change the service's model and send the change event; returns the event clients get."""
    service.model.update(values)
    service.event("test.model", "change", {"values": values})
    return {"event": "test.model.change", "data": {"values": values}}


def connected_node(nodes: list[ClusterNode]) -> ClusterNode:
    """The one node among ``nodes`` that has a client connection."""
    [node] = [node for node in nodes if node.monitor("connz")["num_connections"] > 0]
    return node


async def subscribed_client(gateway, service: FakeService):
    client = await connect_ws(gateway.ws_url)
    response = await client.request("subscribe.test.model")
    assert response["result"] == {"models": {"test.model": service.model}}
    return client


@pytest_twisted.ensureDeferred
async def test_clients_of_gateways_on_different_nodes_see_the_same_events(cluster, service, gateway_factory):
    first, second, service_node = cluster.nodes
    gateways = [await gateway_factory(nats_url=first.url), await gateway_factory(nats_url=second.url)]
    clients = [await subscribed_client(gateway, service) for gateway in gateways]
    await eventually(lambda: cluster.interest_known(service_node, EVENT_SUBJECT))

    sent = [change(service, count=n) for n in range(1, 6)]
    for client in clients:
        assert [await client.next_message() for _ in sent] == sent


@pytest.mark.parametrize("servers", ["one URL", "URL list"])
@pytest_twisted.ensureDeferred
async def test_a_gateway_whose_node_dies_reconnects_through_another(cluster, service, gateway_factory, servers,
                                                                     connected_lines):
    first, second, service_node = cluster.nodes
    # With one URL the gateway learns the other nodes from the cluster; a
    # list names two nodes and the gateway picks one of them at random.
    url = first.url if servers == "one URL" else f"{first.url},{second.url}"
    moving = await gateway_factory(nats_url=url)
    doomed = connected_node([first, second])
    staying = await gateway_factory(nats_url=(second if doomed is first else first).url)
    leaving = await subscribed_client(moving, service)
    watching = await subscribed_client(staying, service)
    await eventually(lambda: cluster.interest_known(service_node, EVENT_SUBJECT))

    assert connected_lines[0] == f"Connected to NATS at {doomed.url}"
    connected_lines.clear()
    doomed.kill()
    assert await within(leaving.closed, 10) == 1001
    await eventually(lambda: not moving.context.available)
    assert moving.cache.resource_count == 0
    # Changes while the client is away reach the other gateway's clients.
    away = change(service, greeting="changed while away")
    assert await watching.next_message() == away

    await eventually(lambda: moving.context.available, 15)
    # The log names the node the gateway now uses.
    [line] = connected_lines
    assert line in {f"Connected to NATS at {node.url}" for node in cluster.nodes if node is not doomed}
    assert not watching.closed.called
    back = await subscribed_client(moving, service)
    assert service.model == {"greeting": "changed while away", "count": 0}
    await eventually(lambda: cluster.interest_known(service_node, EVENT_SUBJECT))
    later = change(service, count=1)
    assert await back.next_message() == later
    assert await watching.next_message() == later


@pytest_twisted.ensureDeferred
async def test_credentials_in_the_url_hold_for_the_nodes_learned_from_the_cluster(gateway_factory, connected_lines):
    cluster = NatsCluster(3, client_args=("--user", "res", "--pass", "secret")).start()
    try:
        first, _, service_node = cluster.nodes
        service = await model_service(service_node.url.replace("//", "//res:secret@"))
        try:
            gateway = await gateway_factory(nats_url=first.url.replace("//", "//res:secret@"))
            client = await subscribed_client(gateway, service)

            first.kill()
            assert await within(client.closed, 10) == 1001
            change(service, greeting="changed while away")
            await eventually(lambda: gateway.context.available, 15)
            await subscribed_client(gateway, service)
            # The password stays out of the line naming the learned node.
            assert connected_lines[-1].startswith("Connected to NATS at nats://***@127.0.0.1:"), connected_lines
            assert "secret" not in " ".join(connected_lines)
        finally:
            await service.stop()
    finally:
        cluster.cleanup()
