"""What the status page on --metricsport shows, and the one timer that samples it.

Everything comes from counters the gateway keeps anyway (``resgate.metrics``,
the cache's event count, the fault log, the client site's open HTTP
connections), read when asked. Rates and the chart need the counters'
recent past: one 1-second timer for the whole process keeps the last
``HISTORY`` samples (a few integers each) in a ring. The most-subscribed
resources are found when the status is asked for, in one pass over the
cache (O(cached resources) per request, the top ``TOP_RESOURCES`` kept).

Resource names are shown, never their queries (a query can carry what a
client typed), and nothing of any client's token or headers. With
``--workers N`` it is the status of the process serving the metrics port,
whose gateway is one of the N.
"""

from __future__ import annotations

import collections
import heapq
from typing import Any, Callable, NamedTuple

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall

import resgate
from resgate.bus import Bus
from resgate.cache.cache import ResourceCache
from resgate.metrics import Metrics
from resgate.probes import Readiness
from resgate.windowedlog import LOG_WINDOW

#: Seconds between samples of the counters.
SAMPLE_INTERVAL = 1.0
#: Samples kept: the chart's five minutes.
HISTORY = 300
#: Rates are averaged over this many seconds up to now.
RATE_WINDOW = 5.0
#: The counters of a Sample given as rates.
RATED = ("connects", "disconnects", "events", "requests")
#: The most-subscribed resources listed.
TOP_RESOURCES = 10


class Sample(NamedTuple):
    """The counters at one moment (totals since start, but for ``connections``)."""

    at: float
    connections: int
    connects: int
    disconnects: int
    events: int
    requests: int


class GatewayStatus(Service):
    """The gateway's state for operators, and the sampler behind its rates and chart.

    The gateway tells it what it cannot read back (NATS lost, NATS
    restored); everything else it reads from the gateway when sampling or
    asked.
    """

    name = "status"

    def __init__(self, *, metrics: Metrics, cache: ResourceCache, bus: Bus, readiness: Readiness,
                 http_connections: Callable[[], int], workers: int, clock: IReactorTime) -> None:
        self.metrics = metrics
        self.cache = cache
        self.bus = bus
        self.readiness = readiness
        self.http_connections = http_connections
        self.workers = workers
        self.clock = clock
        self.started_at = clock.seconds()
        #: Successful reconnections to NATS since start.
        self.nats_reconnects = 0
        #: When NATS was last lost (reactor seconds, the epoch on a real reactor) and why.
        self.nats_last_loss: tuple[float, str] | None = None
        self._samples: collections.deque[Sample] = collections.deque(maxlen=HISTORY + 1)
        self._sampler = LoopingCall(self._sample)
        self._sampler.clock = clock

    def startService(self) -> None:
        super().startService()
        self.started_at = self.clock.seconds()
        self._samples.clear()
        self._sampler.start(SAMPLE_INTERVAL, now=True)

    def stopService(self) -> None:
        super().stopService()
        if self._sampler.running:
            self._sampler.stop()

    def nats_lost(self, reason: str) -> None:
        self.nats_last_loss = (self.clock.seconds(), reason)

    def nats_restored(self) -> None:
        self.nats_reconnects += 1

    def _read(self) -> Sample:
        metrics = self.metrics
        return Sample(self.clock.seconds(), metrics.current_connections() + self.http_connections(),
                      metrics.ws_connections_total, metrics.ws_disconnections_total,
                      self.cache.events_received, metrics.requests_total())

    def _sample(self) -> None:
        self._samples.append(self._read())

    def _rates(self, now: Sample) -> dict[str, float]:
        """Per second, from the oldest sample within RATE_WINDOW up to ``now`` (zeros without one)."""
        since = next((s for s in self._samples if now.at - s.at <= RATE_WINDOW and s.at < now.at), None)
        if since is None:
            return dict.fromkeys(RATED, 0.0)
        elapsed = now.at - since.at
        return {name: round((getattr(now, name) - getattr(since, name)) / elapsed, 2) for name in RATED}

    def _history(self) -> dict[str, Any]:
        samples = list(self._samples)
        events = [round((b.events - a.events) / (b.at - a.at), 2) if b.at > a.at else 0.0
                  for a, b in zip(samples, samples[1:])]
        return {"interval": SAMPLE_INTERVAL, "capacity": HISTORY, "connections": [s.connections for s in samples[1:]],
                "eventsPerSecond": events}

    def most_subscribed(self) -> list[dict[str, Any]]:
        """The TOP_RESOURCES names with the most subscriptions, most first (one pass over the cache)."""
        entries = heapq.nlargest(TOP_RESOURCES, (e for e in self.cache.names.values() if e.count > 0),
                                 key=lambda e: e.count)
        return [{"name": e.name, "subscriptions": e.count} for e in entries]

    def snapshot(self) -> dict[str, Any]:
        """The status as the page's JSON: plain values, nothing of any client's token or headers."""
        now = self._read()
        rates = self._rates(now)
        metrics = self.metrics
        loss = self.nats_last_loss
        reason = self.readiness.reason()
        return {
            "version": resgate.__version__,
            "protocol": resgate.PROTOCOL_VERSION,
            "uptime": round(now.at - self.started_at, 1),
            "workers": self.workers,
            "ready": reason is None,
            "notReadyReason": reason,
            "nats": {
                "connected": self.bus.is_connected,
                "server": self.bus.server,
                "reconnects": self.nats_reconnects,
                "lastLoss": None if loss is None else {"at": loss[0], "reason": loss[1]},
            },
            "clients": {
                "websocket": metrics.current_connections(),
                "http": self.http_connections(),
                "connectsPerSecond": rates["connects"],
                "disconnectsPerSecond": rates["disconnects"],
                "connectsTotal": now.connects,
                "disconnectsTotal": now.disconnects,
                "slowClientsCutOff": metrics.slow_clients_cut_off,
                "refusedPastCaps": metrics.connections_refused(),
            },
            "cache": {
                "resources": metrics.cache_resources(),
                "subscriptions": metrics.cache_subscriptions(),
                "mostSubscribed": self.most_subscribed(),
            },
            "traffic": {
                "eventsPerSecond": rates["events"],
                "requestsPerSecond": rates["requests"],
                "eventsTotal": now.events,
                "requestsTotal": now.requests,
            },
            "faults": {
                "window": LOG_WINDOW,
                "total": self.cache.faults.total,
                "recent": [{"what": what, "requests": prefix, "count": count}
                           for what, prefix, count in self.cache.faults.open_windows()],
            },
            "history": self._history(),
        }
