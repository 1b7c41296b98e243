"""The NATS connection as a service: held open while running, reconnected when lost.

Beside ``resgate.bus``: it drives any ``Bus``, and knows nothing of NATS
but the log lines operators read.
"""

from __future__ import annotations

import random
from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from resgate.backoff import RetryPolicy, jittered_backoff
from resgate.bus import Bus
from resgate.config import DEFAULT_RECONNECT_MAX_DELAY
from resgate.errors import describe_failure

# The gateway's own logger: reconnects are reported as they were from service.py.
log = Logger(namespace="resgate")

#: The first wait before reconnecting to NATS (seconds); the longest is the
#: ``reconnectMaxDelay`` setting.
FIRST_RECONNECT_DELAY = 0.1


def reconnect_backoff(max_delay: float, *, rand: Callable[[], float] = random.random) -> RetryPolicy:
    """The waits between reconnect attempts, ``max_delay`` seconds at most.

    The cap, not the growth, decides how soon a gateway notices that NATS is
    back after a long outage: it is at most one wait late.
    """
    return jittered_backoff(min(FIRST_RECONNECT_DELAY, max_delay), max_delay, rand=rand)


RECONNECT_BACKOFF = reconnect_backoff(DEFAULT_RECONNECT_MAX_DELAY / 1000)


class MessagingService(Service):
    """Holds the NATS connection open while running, reconnecting when it is lost.

    ``on_lost(reason)`` runs when an established connection drops, and
    ``on_restored()`` once a reconnection succeeds; attempts go through the
    server list of the URL, RECONNECT_BACKOFF apart.
    """

    name = "nats"

    def __init__(self, client: Bus, reactor: Any, on_lost: Callable[[str], None],
                 on_restored: Callable[[], None], *, retry_delay: RetryPolicy = RECONNECT_BACKOFF) -> None:
        self.client = client
        self.reactor = reactor
        self.on_lost = on_lost
        self.on_restored = on_restored
        self.retry_delay = retry_delay
        self._attempt = 0
        self._retry: IDelayedCall | None = None
        client.on_lost = self._lost

    def startService(self) -> defer.Deferred[None]:
        super().startService()
        self._attempt = 0
        return self.client.connect()

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        return self.client.close()

    def _lost(self, reason: str) -> None:
        self.on_lost(reason)
        if self.running:
            self._schedule()

    def _schedule(self) -> None:
        delay = self.retry_delay(self._attempt)
        self._attempt += 1
        self._retry = self.reactor.callLater(delay, self._reconnect)

    def _reconnect(self) -> None:
        self._retry = None
        if not self.running:
            return
        self.client.connect().addCallbacks(self._reconnected, self._failed)

    def _reconnected(self, _result: object) -> None:
        if not self.running:
            self.client.close()
            return
        self._attempt = 0
        log.info("Reconnected to NATS")
        self.on_restored()

    def _failed(self, failure: Failure) -> None:
        # Twisted types Failure.value Optional; a Failure always holds one.
        log.warn("Reconnecting to NATS failed: {reason}",
                 reason=describe_failure(failure.value))  # type: ignore[arg-type]
        if self.running:
            self._schedule()
