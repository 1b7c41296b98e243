"""A Twisted application of its own that also runs a RES gateway.

    twistd -ny examples/embedded/app.tac

The host serves its own HTTP endpoint (``/status`` on HOST_PORT, default
8000) and runs a ``resgate.service.GatewayService`` (HTTP and WebSocket on
RESGATE_PORT, default 8080, talking to NATS at NATS_URL, default
nats://127.0.0.1:4222). RESGATE_LISTEN, when set, is a Twisted endpoint
string the gateway listens on instead, such as ``systemd:domain=INET:index=0``
for a socket that systemd opened (socket activation). Both are children of one MultiService, so they start
and stop together. A gateway that cannot start (no NATS) logs why; the host
keeps serving, and ``/status`` says the gateway is not running.
"""

import json
import os

# nats-py runs on asyncio, so the gateway needs Twisted's asyncio reactor. It
# must be installed before anything imports twisted.internet.reactor; twistd
# loads this file before it installs a reactor of its own.
from resgate.process import install_reactor

reactor = install_reactor()

from twisted.application import service, strports  # noqa: E402
from twisted.web import resource, server  # noqa: E402

from resgate.config import Config  # noqa: E402
from resgate.service import GatewayService  # noqa: E402

HOST_PORT = int(os.environ.get("HOST_PORT", "8000"))
RESGATE_PORT = int(os.environ.get("RESGATE_PORT", "8080"))
NATS_URL = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
RESGATE_LISTEN = os.environ.get("RESGATE_LISTEN") or None


class Status(resource.Resource):
    """The host's own endpoint: it answers whatever state the gateway is in."""

    isLeaf = True

    def __init__(self, gateway: GatewayService) -> None:
        super().__init__()
        self.gateway = gateway

    def render_GET(self, request: server.Request) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        return json.dumps({
            "host": "ok",
            "gateway": {"running": bool(self.gateway.running), "port": self.gateway.port},
        }).encode()


# The same settings Resgate's flags and config file give, as a Config.
config = Config(nats_url=NATS_URL, addr="127.0.0.1", port=RESGATE_PORT)
gateway = GatewayService(config, reactor=reactor, listen=RESGATE_LISTEN)

application = service.Application("host-with-resgate")
host = service.MultiService()
host.setServiceParent(application)

root = resource.Resource()
root.putChild(b"status", Status(gateway))
strports.service(f"tcp:{HOST_PORT}:interface=127.0.0.1", server.Site(root)).setServiceParent(host)
gateway.setServiceParent(host)
