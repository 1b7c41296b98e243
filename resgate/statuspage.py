"""The live status page on --metricsport: ``/``, its script, style and icon, and ``/status.json``.

Read-only, and self-contained: the page and its other files are files
of this package (``resgate/static/``), read once, and served with a
Content-Security-Policy that lets the page load only them from this port
and fetch only from it; nothing comes from outside the gateway. The page
fills itself from ``/status.json`` (``resgate.status``) every second. Each
path takes only GET and HEAD without query or body, as the probes do.
"""

from __future__ import annotations

from pathlib import Path

import orjson
from twisted.web import server

from resgate.probes import refuse_unless_bare_get
from resgate.status import GatewayStatus

STATIC = Path(__file__).resolve().parent / "static"
STATUS_PATH = b"/status.json"
#: Path -> (file under STATIC, content type).
FILES = {
    b"/": ("status.html", b"text/html; charset=utf-8"),
    b"/status.js": ("status.js", b"text/javascript; charset=utf-8"),
    b"/status.css": ("status.css", b"text/css; charset=utf-8"),
    # Browsers ask for an icon whatever the page says: one of its own, not a 404 in the console.
    b"/favicon.svg": ("favicon.svg", b"image/svg+xml"),
}
JSON_TYPE = b"application/json"
REFUSAL_TYPE = b"text/plain; charset=utf-8"
#: The page may load its own script and style and fetch from this port, nothing else.
CONTENT_SECURITY_POLICY = (b"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                           b"img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


class StatusPage:
    """Serves the page's files and the status JSON on the metrics port."""

    def __init__(self, status: GatewayStatus) -> None:
        self.status = status
        self.files = {path: ((STATIC / name).read_bytes(), content_type)
                      for path, (name, content_type) in FILES.items()}
        self.paths = frozenset([*self.files, STATUS_PATH])

    def render(self, request: server.Request) -> bytes:
        # Of this instant, and not for any other site to frame or sniff.
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"referrer-policy", b"no-referrer")
        request.setHeader(b"content-security-policy", CONTENT_SECURITY_POLICY)
        refusal = refuse_unless_bare_get(request)
        if refusal is not None:
            request.setHeader(b"content-type", REFUSAL_TYPE)
            return refusal
        if request.path == STATUS_PATH:
            request.setHeader(b"content-type", JSON_TYPE)
            return orjson.dumps(self.status.snapshot())
        body, content_type = self.files[request.path]
        request.setHeader(b"content-type", content_type)
        return body
