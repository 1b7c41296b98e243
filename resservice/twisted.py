"""Running a service in a Twisted process, next to a gateway or any other Twisted code.

Twisted must run on its asyncio reactor (nats-py is asyncio), installed
before anything imports ``twisted.internet.reactor``::

    from twisted.internet import asyncioreactor
    asyncioreactor.install()

Then ``serve(service, url)`` starts it and gives a Deferred, and
``ServiceService`` makes it a child of a ``twisted.application`` service
tree, started and stopped (gracefully) with it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from twisted.application import service as application
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python import failure

from resservice.bus import Bus
from resservice.service import Service

log = Logger(namespace="resservice")


def serve(service: Service, bus: Bus | str | list[str] | None = None, **nats_options: Any) -> defer.Deferred:
    """Start ``service`` on the reactor's loop; a Deferred that fires once it serves."""
    return defer.Deferred.fromFuture(asyncio.ensure_future(service.start(bus, **nats_options)))


def shutdown(service: Service) -> defer.Deferred:
    """Shut ``service`` down gracefully; a Deferred that fires once it has stopped."""
    return defer.Deferred.fromFuture(asyncio.ensure_future(service.shutdown()))


class ServiceService(application.Service):
    """A RES service as a Twisted application service.

    A service that cannot start (no NATS) is logged; the rest of the
    application keeps running. ``when_serving()`` fires once it serves.
    """

    def __init__(self, service: Service, bus: Bus | str | list[str] | None = None, **nats_options: Any) -> None:
        self.service = service
        self.bus = bus
        self.nats_options = nats_options
        self._outcome: Any = None
        self._waiting: list[defer.Deferred] = []

    def startService(self) -> None:
        super().startService()
        serve(self.service, self.bus, **self.nats_options).addBoth(self._started)

    def _started(self, outcome: Any) -> None:
        if isinstance(outcome, failure.Failure):
            log.error("RES service {name!r} did not start: {error}",
                      name=self.service.name, error=outcome.getErrorMessage())
        else:
            log.info("RES service {name!r} serving", name=self.service.name)
        self._outcome = outcome if isinstance(outcome, failure.Failure) else True
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            self._fire(d)

    def _fire(self, d: defer.Deferred) -> None:
        if isinstance(self._outcome, failure.Failure):
            d.errback(self._outcome)
        else:
            d.callback(self.service)

    def when_serving(self) -> defer.Deferred:
        """A Deferred of the service once it serves (or failing as its start did)."""
        d: defer.Deferred = defer.Deferred()
        if self._outcome is None:
            self._waiting.append(d)
        else:
            self._fire(d)
        return d

    def stopService(self) -> defer.Deferred:
        super().stopService()
        return shutdown(self.service)
