"""Back on NATS within a second of nats-server accepting again (issue #17, item 1).

A real nats-server is killed and started again on the same port, after a
short outage and after a long one. A long outage is the case that matters:
the reconnect waits have grown to their cap by then, and the cap
(``reconnectMaxDelay``) is what decides how late the gateway notices that
NATS is back. The server is started right after a failed attempt, the worst
moment, so that the gateway waits a whole capped delay; with the former 5 s
cap both tests fail every time.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, threads
from twisted.logger import globalLogPublisher

from tests.rig.aio import eventually, sleep, within
from tests.rig.service import FakeService
from tests.rig.ws import connect_ws

#: The promise: a new client gets current data this soon after nats-server accepts.
PROMISE = 1.0
#: Slack beyond the promise, for what the promise does not cover: the rig's
#: port poll and upgrade retries (every POLL_INTERVAL), the test service's own
#: connect and subscriptions, the WebSocket upgrade and the get, all a few
#: loopback round trips, and scheduling stalls on a CI machine whose two
#: cores run other test processes too.
MARGIN = 0.5
#: How often the port and the WebSocket upgrade are tried again.
POLL_INTERVAL = 0.01
SHORT_OUTAGE = 1.5
#: Past the point where the waits reach any cap up to several seconds; it
#: adds its length to the suite's run time.
LONG_OUTAGE = 20.0
#: The long outage under ``--long``: minutes, as a NATS upgrade might take.
LONG_RUN_OUTAGE = 180.0
#: Bound on the whole test beyond its outage.
TEST_SLACK = 60.0
#: Bound on waiting for the gateway's next failed attempt, and on a restart.
ATTEMPT_TIMEOUT = 10.0
FAILED_ATTEMPT_FORMAT = "Reconnecting to NATS failed: {reason}"


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=POLL_INTERVAL).close()
    except OSError:
        return False
    return True


def next_failed_attempt() -> defer.Deferred[None]:
    """Fires on the gateway's next failed reconnect attempt."""
    failed: defer.Deferred[None] = defer.Deferred()

    def observe(event: dict[str, Any]) -> None:
        if event.get("log_format") == FAILED_ATTEMPT_FORMAT and not failed.called:
            globalLogPublisher.removeObserver(observe)
            reactor.callLater(0, failed.callback, None)

    globalLogPublisher.addObserver(observe)
    return failed


async def current_data(gateway, nats_url: str, model: dict) -> dict:
    """What a new client gets once the gateway admits it, from a service started now."""
    service = FakeService(nats_url)
    service.on("access.test.model", lambda r: r.respond_result({"get": True}))
    service.on("get.test.model", lambda r: r.respond_result({"model": model}))
    await service.start()
    try:
        while True:
            try:
                client = await connect_ws(gateway.ws_url)
            except ConnectionError as e:
                # 503 until the gateway is back on NATS.
                assert "[503]" in str(e)
                await sleep(POLL_INTERVAL)
                continue
            return (await client.request("subscribe.test.model"))["result"]
    finally:
        await service.stop()


@pytest.mark.timeout(LONG_RUN_OUTAGE + TEST_SLACK)
@pytest.mark.parametrize("kind", ["short", "long"])
@pytest_twisted.ensureDeferred
async def test_a_new_client_gets_current_data_within_a_second_of_nats_accepting(
        private_nats_server, gateway_factory, long_run, kind):
    outage = SHORT_OUTAGE if kind == "short" else LONG_RUN_OUTAGE if long_run else LONG_OUTAGE
    gateway = await gateway_factory(nats_url=private_nats_server.url)
    model = {"greeting": "hello"}
    assert await current_data(gateway, private_nats_server.url, model) == {"models": {"test.model": model}}

    private_nats_server.kill()
    await eventually(lambda: not gateway.context.available)
    model = {"greeting": "changed during the outage"}
    await sleep(outage)

    await within(next_failed_attempt(), ATTEMPT_TIMEOUT)
    started = threads.deferToThread(private_nats_server.start)
    await eventually(lambda: accepts(private_nats_server.port), ATTEMPT_TIMEOUT)
    result = await within(defer.ensureDeferred(current_data(gateway, private_nats_server.url, model)),
                          PROMISE + MARGIN)
    assert result == {"models": {"test.model": model}}
    await within(started, ATTEMPT_TIMEOUT)
