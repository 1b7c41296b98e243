"""Liveness and readiness probes, served beside /metrics on --metricsport.

``/healthz`` answers whenever the reactor runs this code at all: a process
that cannot answer it is stuck or gone. ``/readyz`` answers 200 only while
the gateway could serve a new client (NATS connected, client port
listening, not shutting down), so that a load balancer or Kubernetes stops
sending clients before they would be turned away. Bodies are one plain-text
line: ``ok`` or why not.
"""

from __future__ import annotations

from typing import Callable, Collection, Protocol

from twisted.web import resource as web_resource
from twisted.web import server

HEALTH_PATH = b"/healthz"
READY_PATH = b"/readyz"
PROBE_METHODS = (b"GET", b"HEAD")
CONTENT_TYPE = b"text/plain; charset=utf-8"

#: The reasons /readyz gives, one line each.
SHUTTING_DOWN = "shutting down"
NOT_LISTENING = "client listener not listening"
RECONNECTING = "reconnecting to NATS"
NOT_CONNECTED = "not connected to NATS"


class Readiness:
    """Whether the gateway can take a new client now, and if not, why.

    Reads the gateway's state when asked (nothing to keep in step); the
    gateway tells it only what it cannot read back: the reason NATS was
    lost, and that shutdown has begun.
    """

    def __init__(self, nats_connected: Callable[[], bool], listening: Callable[[], bool]) -> None:
        self.nats_connected = nats_connected
        self.listening = listening
        self.shutting_down = False
        #: Why the NATS connection was lost, until it is restored.
        self.lost_reason: str | None = None

    def reason(self) -> str | None:
        """None when ready; else one line saying why not (shutdown first: it is final)."""
        if self.shutting_down:
            return SHUTTING_DOWN
        if self.lost_reason is not None:
            return f"{self.lost_reason}; {RECONNECTING}"
        if not self.nats_connected():
            return NOT_CONNECTED
        if not self.listening():
            return NOT_LISTENING
        return None


class MonitorResource(web_resource.Resource):
    """The metrics port: ``/metrics``, ``/healthz``, ``/readyz`` and the status page; anything else is not found."""

    isLeaf = True

    def __init__(self, metrics: web_resource.Resource, readiness: Readiness,
                 status_page: StatusPaths) -> None:
        super().__init__()
        self.metrics = metrics
        self.readiness = readiness
        self.status_page = status_page

    def render(self, request: server.Request) -> bytes:
        if request.path == HEALTH_PATH:
            return _probe(request, None)
        if request.path == READY_PATH:
            return _probe(request, self.readiness.reason())
        if request.path in self.status_page.paths:
            return self.status_page.render(request)
        # /metrics, and every other path as the metrics port always answered it (404).
        return self.metrics.render(request)


class StatusPaths(Protocol):
    """What the monitor needs of the status page (resgate.statuspage.StatusPage)."""

    @property
    def paths(self) -> Collection[bytes]:
        """The paths it serves."""

    def render(self, request: server.Request) -> bytes: ...


def refuse_unless_bare_get(request: server.Request) -> bytes | None:
    """The answer (405, 400) to anything but a GET or HEAD without query or body; None for those.

    For what the metrics port serves besides /metrics: it takes nothing.
    """
    if request.method not in PROBE_METHODS:
        request.setResponseCode(405)
        request.setHeader(b"allow", b", ".join(PROBE_METHODS))
        return b"Method not allowed\n"
    # A query or a body is a client mistaken about what it asks.
    if b"?" in request.uri or (request.content is not None and request.content.read(1)):
        request.setResponseCode(400)
        return b"Bad request: no query and no body here\n"
    return None


def _probe(request: server.Request, reason: str | None) -> bytes:
    """200 ``ok``, or 503 with ``reason``; never cached (the answer is of this instant)."""
    request.setHeader(b"cache-control", b"no-store")
    request.setHeader(b"content-type", CONTENT_TYPE)
    refusal = refuse_unless_bare_get(request)
    if refusal is not None:
        return refusal
    if reason is None:
        return b"ok\n"
    request.setResponseCode(503)
    return reason.encode() + b"\n"
