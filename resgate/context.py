"""GatewayContext: what every connection of the gateway shares.

The cache, the bus, the work queue, the clock and the settings, the log of
what clients do wrong, and the one registry of open connections (by cid):
the metrics count it, and a system.tokenReset reaches the connections
through it.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Protocol

from twisted.internet.interfaces import IReactorTime

from resgate.bus import Bus
from resgate.cache.cache import ResourceCache
from resgate.config import Config
from resgate.metrics import Metrics
from resgate.tracing import Tracing
from resgate.windowedlog import WindowedLog
from resgate.workqueue import WorkQueue

class RegisteredConnection(Protocol):
    """What the context needs of a connection it holds (resgate.connection.Connection)."""

    def token_reset(self, tids: set[str], subject: str) -> None:
        """Clear the token if its tid is among ``tids`` (system.tokenReset on ``subject``)."""


class GatewayContext:
    """What connections share: the cache, the work queue, settings, the client log, the open connections."""

    def __init__(self, cache: ResourceCache, config: Config, *, debug: bool = False, trace: bool = False,
                 tracing: Tracing | None = None) -> None:
        self.cache = cache
        self.mq: Bus = cache.bus
        self.work: WorkQueue = cache.work
        self.config = config
        self.debug = debug
        self.trace = trace
        #: Records the spans of client requests (resgate.otel); None when OpenTelemetry is not configured.
        self.tracing = tracing
        #: The gateway's clock (the cache's): connections' timers run on it.
        self.clock: IReactorTime = cache.reactor
        #: Warnings about clients: protocol violations, refusals, cut-offs.
        #: A hostile client can cause one per connection, so each kind is
        #: logged once and then counted per window, except under trace.
        self.client_log: WindowedLog[Hashable] = WindowedLog(self.clock, every_line=trace)
        self.conns: dict[str, RegisteredConnection] = {}
        self.metrics = Metrics()
        #: False while NATS is lost: new clients are turned away (503).
        self.available = True
        cache.on_token_reset = self._token_reset

    def _token_reset(self, tids: set[str], subject: str) -> None:
        for conn in list(self.conns.values()):
            conn.token_reset(tids, subject)
