"""resservice in a Twisted process: started and stopped as a twisted.application service."""

from __future__ import annotations

import pytest_twisted
from twisted.internet import defer

from resservice import MemoryBus, Service
from resservice.testing import Session
from resservice.twisted import ServiceService
from tests.rig.aio import as_deferred, failure_of, within


@pytest_twisted.ensureDeferred
async def test_a_service_as_a_twisted_application_service():
    service = Service("tw")
    service.model("model")(lambda r: {"in": "twisted"})
    bus = MemoryBus()
    app_service = ServiceService(service, bus)
    app_service.startService()
    assert await within(app_service.when_serving(), 10) is service

    async def ask():
        session = Session(Service("asker"), bus=bus)
        await session.start()
        try:
            return (await session.get("tw.model")).result
        finally:
            await session.close()

    assert await within(as_deferred(ask()), 10) == {"model": {"in": "twisted"}}
    await within(defer.maybeDeferred(app_service.stopService), 10)
    assert service.state == "stopped"


@pytest_twisted.ensureDeferred
async def test_a_service_that_cannot_start_fails_when_serving_and_leaves_the_reactor_running():
    from twisted.internet import reactor

    service = Service("tw")
    # Two patterns for the same resources: the start fails.
    service.model("other.$a")(lambda r: {})
    service.model("other.$b")(lambda r: {})
    app_service = ServiceService(service, MemoryBus())
    app_service.startService()
    error = await failure_of(app_service.when_serving(), 10)
    assert "match the same resources" in str(error)
    assert reactor.running
    await within(defer.maybeDeferred(app_service.stopService), 10)
