"""examples/page.py: what serves each example's page (the page, ResClient's bundle, the gateway's URL)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest_twisted
import treq
from twisted.internet import defer, endpoints
from twisted.web import resource

from tests.rig.aio import within

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
sys.path.insert(0, str(EXAMPLES))

import page as example_page  # noqa: E402


@pytest_twisted.ensureDeferred
async def test_static_site_serves_the_page_resclient_and_config(tmp_path):
    from twisted.internet import reactor

    page = tmp_path / "index.html"
    page.write_text("<h1>hi</h1>")

    class Hello(resource.Resource):
        isLeaf = True

        def render_GET(self, request):
            return b"extra"

    async def get(port, path):
        response = await within(treq.get(f"http://127.0.0.1:{port}{path}"), 10)
        return response.code, response.headers.getRawHeaders("content-type", [""])[0], \
            await within(treq.content(response), 10)

    sites = [example_page.static_site(page, "ws://127.0.0.1:9999", {"hello": Hello()}), example_page.static_site(page)]
    ports = [await within(endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(site), 10)
             for site in sites]
    try:
        with_url, without_url = (p.getHost().port for p in ports)
        assert await get(with_url, "/") == (200, "text/html; charset=utf-8", b"<h1>hi</h1>")
        assert (await get(with_url, "/index.html"))[2] == b"<h1>hi</h1>"
        code, kind, body = await get(with_url, "/config.js")
        assert (code, kind, body) == (200, "text/javascript; charset=utf-8",
                                      b'window.RESGATE_URL = "ws://127.0.0.1:9999";\n')
        code, _, body = await get(without_url, "/config.js")
        assert code == 200 and b"RESGATE_URL" not in body.replace(b"// No --resgate", b"")
        assert await get(with_url, "/hello") == (200, "text/html", b"extra")
        assert (await get(with_url, "/server.py"))[0] == 404
        code, kind, body = await get(with_url, "/resclient.min.js")
        assert example_page.RESCLIENT_JS.is_file(), "run scripts/setup (npm ci in examples/)"
        assert code == 200 and "javascript" in kind and body == example_page.RESCLIENT_JS.read_bytes()
    finally:
        for port in ports:
            await within(defer.maybeDeferred(port.stopListening), 10)
