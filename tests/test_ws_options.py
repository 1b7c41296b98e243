"""WebSocket options of the gateway (Resgate's 19websocket_options scenarios).

| upstream test function | pytest test(s) here |
| --- | --- |
| TestWebSocketOptions_WithCompressionEnabled_CanSubscribe | test_subscribe_over_compressed_connection |
| TestWebSocketOptions_WSHeaderAuth_ExpectedResponse | tests/test_http_meta.py: test_ws_header_auth |

TestWebSocketOptions_WSHeaderAuth_ExpectedResponse is about ``--wsheadauth``
(an auth request with the HTTP headers of the WebSocket upgrade, ``isHttp:
true``, before the connection opens) and lives with the other header-auth
scenarios in tests/test_http_meta.py.

Upstream's compression test only subscribes with compression switched on;
here the client also offers permessage-deflate and the test checks that the
gateway accepted it, so the subscription really runs over a compressed
connection.
"""

import pytest_twisted
from autobahn.twisted.websocket import WebSocketClientFactory, connectWS
from autobahn.websocket.compress import (
    PerMessageDeflateOffer,
    PerMessageDeflateResponse,
    PerMessageDeflateResponseAccept,
)
from twisted.internet import defer

from tests.rig.aio import WAIT_TIMEOUT, within
from tests.rig.resources import PROTOCOL_VERSION, VERSION_LATEST, client_result, subscribe_to
from tests.rig.ws import WsClient


def _accept_deflate(response):
    if isinstance(response, PerMessageDeflateResponse):
        return PerMessageDeflateResponseAccept(response)
    return None


def connect_compressing_ws(url: str, timeout: float = WAIT_TIMEOUT) -> defer.Deferred:
    """Like ``connect_ws``, with a client that offers permessage-deflate."""
    factory = WebSocketClientFactory(url)
    factory.protocol = WsClient
    factory.opened = defer.Deferred()
    factory.setProtocolOptions(
        perMessageCompressionOffers=[PerMessageDeflateOffer()],
        perMessageCompressionAccept=_accept_deflate,
    )
    connectWS(factory, timeout=timeout)
    return within(factory.opened, timeout)


@pytest_twisted.ensureDeferred
async def test_subscribe_over_compressed_connection(gateway_factory, fake_service):
    gateway = await gateway_factory(ws_compression=True)
    client = await connect_compressing_ws(gateway.ws_url)
    in_use = client.websocket_extensions_in_use
    assert [ext.EXTENSION_NAME for ext in in_use] == ["permessage-deflate"], in_use

    response = await client.request("version", {"protocol": VERSION_LATEST})
    assert response["result"] == {"protocol": PROTOCOL_VERSION}
    response, _ = await subscribe_to(client, fake_service, "test.model")
    assert response["result"] == client_result("test.model")
    # Events are compressed per connection too, not sent as the shared plain frame.
    text = "compressible " * 1000
    wire_before = client.trafficStats.incomingOctetsWireLevel
    fake_service.event("test.model", "change", {"values": {"string": text}})
    event = await client.next_message()
    assert event == {"event": "test.model.change", "data": {"values": {"string": text}}}
    assert client.trafficStats.incomingOctetsWireLevel - wire_before < len(text) / 10
