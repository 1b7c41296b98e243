"""OpenMetrics for operators: Resgate's metric names, served on --metricsport.

The counters are plain integers bumped on the request paths (an attribute
add, nothing more); gauges that mirror gateway state (connections, cached
resources) are read when scraped, so keeping them costs nothing in between.
The text is written here rather than through a client library so that it
matches Resgate's output line for line (integers stay integers).
"""

from __future__ import annotations

import os
import platform
import resource
import sys
from typing import Callable

from twisted.web import resource as web_resource
from twisted.web import server

import resgate

CONTENT_TYPE = b"application/openmetrics-text; version=1.0.0; charset=utf-8"
WS_METHODS = ("get", "subscribe", "unsubscribe", "call", "auth")
HTTP_METHODS = ("GET", "POST")


def resident_memory_bytes() -> int:
    """This process's resident set size (Linux /proc; else the peak from getrusage)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


class Metrics:
    """The gateway's counters, and the gauges read from its state on scrape."""

    def __init__(self) -> None:
        self.ws_connections_total = 0
        # Not in the OpenMetrics text (Resgate has neither); the status page shows them.
        self.ws_disconnections_total = 0
        self.slow_clients_cut_off = 0
        self.ws_requests = dict.fromkeys(WS_METHODS, 0)
        self.http_requests = dict.fromkeys(HTTP_METHODS, 0)
        self.current_connections: Callable[[], int] = lambda: 0
        self.cache_resources: Callable[[], int] = lambda: 0
        self.cache_subscriptions: Callable[[], int] = lambda: 0
        self.connections_refused: Callable[[], int] = lambda: 0

    def count_http_request(self, method: str) -> None:
        self.http_requests[method] = self.http_requests.get(method, 0) + 1

    def requests_total(self) -> int:
        """Client requests so far, WebSocket and HTTP alike."""
        return sum(self.ws_requests.values()) + sum(self.http_requests.values())

    def render(self) -> bytes:
        """The OpenMetrics text exposition."""
        lines = [
            "# TYPE python info",
            "# HELP python Information about the Python environment.",
            f'python_info{{version="{platform.python_version()}",implementation="{platform.python_implementation()}"}} 1',
            "# TYPE resgate info",
            "# HELP resgate Information about resgate.",
            f'resgate_info{{version="{resgate.__version__}",protocol="{resgate.PROTOCOL_VERSION}"}} 1',
            "# TYPE process_resident_memory_bytes gauge",
            "# HELP process_resident_memory_bytes Resident memory size in bytes.",
            f"process_resident_memory_bytes {resident_memory_bytes()}",
            "# TYPE resgate_ws_current_connections gauge",
            "# HELP resgate_ws_current_connections Current established WebSocket connections.",
            f"resgate_ws_current_connections {self.current_connections()}",
            "# TYPE resgate_ws_connections counter",
            "# HELP resgate_ws_connections Total established WebSocket connections.",
            f"resgate_ws_connections_total {self.ws_connections_total}",
            "# TYPE resgate_ws_requests counter",
            "# HELP resgate_ws_requests Total WebSocket client requests.",
        ]
        lines += [f'resgate_ws_requests_total{{method="{m}"}} {n}' for m, n in self.ws_requests.items()]
        lines += [
            "# TYPE resgate_http_requests counter",
            "# HELP resgate_http_requests Total HTTP client requests.",
        ]
        lines += [f'resgate_http_requests_total{{method="{m}"}} {n}' for m, n in self.http_requests.items()]
        lines += [
            "# TYPE resgate_cache_resources gauge",
            "# HELP resgate_cache_resources Current number of resources stored in the cache.",
            f"resgate_cache_resources {self.cache_resources()}",
            "# TYPE resgate_cache_subscriptions gauge",
            "# HELP resgate_cache_subscriptions Current number of subscriptions on cached resources.",
            f"resgate_cache_subscriptions {self.cache_subscriptions()}",
            "# TYPE resgate_connections_refused counter",
            "# HELP resgate_connections_refused Total client connections refused past the connection caps.",
            f"resgate_connections_refused_total {self.connections_refused()}",
            "# EOF",
        ]
        return ("\n".join(lines) + "\n").encode()


class MetricsResource(web_resource.Resource):
    """``/metrics`` on the metrics port; anything else is not found."""

    isLeaf = True

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self.metrics = metrics

    def render_GET(self, request: server.Request) -> bytes:
        if request.path != b"/metrics":
            request.setResponseCode(404)
            return b"Not found\n"
        request.setHeader(b"content-type", CONTENT_TYPE)
        return self.metrics.render()
