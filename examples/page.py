"""What every example does besides its RES service: serve its page, parse its command line, run.

The services themselves are written with resservice (the package at the
root of this repository); this module only serves the example's web page
and runs service and page together on Twisted::

    from page import run
    run(service, page=HERE / "index.html", port=8081, description=__doc__)

``run()`` parses ``--nats``, ``--addr``, ``--port`` and ``--resgate``,
starts the service, serves the page with ``static_site()`` and prints
``Client available at http://HOST:PORT`` once both are up.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
try:
    import resservice
except ImportError:
    # Run from a clone that was not installed: the package is at its root.
    sys.path.insert(0, str(ROOT))

    import resservice

#: ResClient's browser bundle, installed by ``npm ci`` in examples/ (scripts/setup).
RESCLIENT_JS = Path(__file__).resolve().parent / "node_modules" / "resclient" / "dist" / "resclient.min.js"


def static_site(page: Path, resgate_url: str | None = None, children: dict | None = None):
    """A twisted.web Site serving an example's page.

    ``/`` is ``page`` (index.html); ``/resclient.min.js`` is ResClient's
    bundle from examples/node_modules (installed by scripts/setup);
    ``/config.js`` sets ``window.RESGATE_URL`` to ``resgate_url`` when given
    (otherwise the page uses ``ws://<its own host>:8080``). ``children``
    adds resources by name (a login page, say).
    """
    from twisted.web import pages, resource, server

    class Page(resource.Resource):
        isLeaf = False

        def getChild(self, name: bytes, request):
            if name in (b"", b"index.html"):
                return self
            return pages.notFound()

        def render_GET(self, request) -> bytes:
            request.setHeader(b"content-type", b"text/html; charset=utf-8")
            request.setHeader(b"cache-control", b"no-store")
            return page.read_bytes()

    class Config(resource.Resource):
        isLeaf = True

        def render_GET(self, request) -> bytes:
            request.setHeader(b"content-type", b"text/javascript; charset=utf-8")
            request.setHeader(b"cache-control", b"no-store")
            if resgate_url is None:
                return b"// No --resgate given: the page connects to ws://<its host>:8080.\n"
            return f"window.RESGATE_URL = {json.dumps(resgate_url)};\n".encode()

    class Script(resource.Resource):
        isLeaf = True

        def render_GET(self, request) -> bytes:
            if not RESCLIENT_JS.is_file():
                request.setResponseCode(404)
                request.setHeader(b"content-type", b"text/plain; charset=utf-8")
                return (f"{RESCLIENT_JS} is missing: run scripts/setup "
                        "(it runs `npm ci` in examples/)\n").encode()
            request.setHeader(b"content-type", b"text/javascript; charset=utf-8")
            return RESCLIENT_JS.read_bytes()

    root = Page()
    root.putChild(b"config.js", Config())
    root.putChild(b"resclient.min.js", Script())
    for name, child in (children or {}).items():
        root.putChild(name.encode() if isinstance(name, str) else name, child)
    return server.Site(root)


def arguments(description: str, port: int, argv: list[str] | None = None) -> argparse.Namespace:
    """The command line every example takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--nats", default="nats://127.0.0.1:4222", help="NATS server URL (default: %(default)s)")
    parser.add_argument("--addr", default="127.0.0.1", help="address the page is served on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=port,
                        help="port the page is served on, 0 for any (default: %(default)s)")
    parser.add_argument("--resgate", default=None, metavar="URL",
                        help="WebSocket URL of the gateway for the page (default: ws://<page host>:8080)")
    return parser.parse_args(argv)


def install_reactor() -> None:
    """Install Twisted's asyncio reactor (nats-py is asyncio) unless a reactor is installed already."""
    if "twisted.internet.reactor" not in sys.modules:
        from twisted.internet import asyncioreactor

        asyncioreactor.install()


def run(service: resservice.Service, page: Path, port: int, description: str = "A RES service example",
        children: dict | None = None, argv: list[str] | None = None,
        started: Callable[[], None] | None = None) -> None:
    """Start ``service``, serve ``page`` and run the reactor until stopped (then shut down gracefully).

    ``started`` is called once the service serves (to start a ticker, say).
    """
    args = arguments(description, port, argv)
    install_reactor()
    from twisted.internet import defer, endpoints, reactor

    import resservice.twisted

    async def main() -> None:
        await resservice.twisted.serve(service, args.nats)
        endpoint = endpoints.TCP4ServerEndpoint(reactor, args.port, interface=args.addr)
        listening = await endpoint.listen(static_site(page, args.resgate, children))
        if started is not None:
            started()
        host = listening.getHost()
        print(f"Connected to NATS at {args.nats}", flush=True)
        print(f"Client available at http://{host.host}:{host.port}", flush=True)

    def failed(failure) -> None:
        print(f"error: {failure.getErrorMessage()}", file=sys.stderr, flush=True)
        exit_code.append(1)
        reactor.stop()

    exit_code: list[int] = []
    reactor.callWhenRunning(lambda: defer.ensureDeferred(main()).addErrback(failed))
    reactor.addSystemEventTrigger("before", "shutdown", lambda: resservice.twisted.shutdown(service))
    reactor.run()
    sys.exit(exit_code[0] if exit_code else 0)
