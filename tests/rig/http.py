"""An HTTP client for tests: real requests over loopback with treq."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import treq
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from tests.rig.aio import WAIT_TIMEOUT, within


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, list[str]]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None


async def http_request(method: str, url: str, *, body: bytes | None = None,
                       headers: dict[str, str] | None = None,
                       timeout: float = WAIT_TIMEOUT) -> HttpResponse:
    """Send one request and read the whole response, bounded by ``timeout``."""
    response = await within(treq.request(method, url, data=body, headers=headers,
                                         persistent=False), timeout)
    content = await within(treq.content(response), timeout)
    headers_out = {k.decode().lower(): [v.decode() for v in vs]
                   for k, vs in response.headers.getAllRawHeaders()}
    return HttpResponse(response.code, headers_out, content)


async def scrape_metrics(port: int) -> dict[tuple[str, tuple], float]:
    """Every sample of the gateway's metrics endpoint on ``port``, by (name, sorted labels)."""
    response = await http_request("GET", f"http://127.0.0.1:{port}/metrics")
    assert response.status == 200
    assert response.header("content-type") == "application/openmetrics-text; version=1.0.0; charset=utf-8"
    samples = {}
    for family in text_string_to_metric_families(response.body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples
