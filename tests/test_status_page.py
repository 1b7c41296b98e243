"""The status page on --metricsport in headless Chromium (tests/rig/browser.py).

The page loads with no console error or page error, and the numbers it
shows change by themselves as clients connect, subscribe and events flow;
the chart draws. A screenshot is kept under
``test-artifacts/status-page/<test>/`` (gitignored). The JSON behind it:
tests/test_status.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_twisted

import resgate
from tests.rig.aio import sleep
from tests.rig.browser import launch_browser
from tests.rig.process import free_port
from tests.rig.ws import connect_ws

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "status-page"
TOKEN_SECRET = "tok-5c1d-never-on-the-page"
#: The page polls every second; on a loaded machine give it several polls.
PAGE_WAIT = 15.0

pytestmark = [pytest.mark.timeout(90), pytest.mark.usefixtures("logged_errors")]


@pytest_twisted.async_yield_fixture
async def browser(request):
    driver = await launch_browser(ARTIFACTS / request.node.name)
    yield driver
    await driver.exit()


async def shown_number(browser, selector: str) -> float:
    return float(await browser.text("status", selector))


async def until_shown(browser, selector: str, check, seconds: float = PAGE_WAIT) -> float:
    """Poll the page's ``selector`` until ``check(number)``; fails after ``seconds``."""
    from twisted.internet import reactor

    deadline = reactor.seconds() + seconds
    while True:
        value = await shown_number(browser, selector)
        if check(value):
            return value
        if reactor.seconds() > deadline:
            raise AssertionError(f"{selector} still shows {value} after {seconds}s")
        await sleep(0.1)


@pytest_twisted.ensureDeferred
async def test_the_page_follows_clients_and_events_by_itself(gateway_factory, fake_service, browser):
    gateway = await gateway_factory(metrics_port=free_port())
    fake_service.on("auth.test.login", lambda r: r.respond({"result": None, "token": {"t": TOKEN_SECRET}}))
    fake_service.on("access.test.model", lambda r: r.respond_result({"get": True}))
    fake_service.on("get.test.model", lambda r: r.respond_result({"model": {"n": 0}}))

    await browser.open("status", f"http://127.0.0.1:{gateway.config.metrics_port}/")
    await browser.wait_text("status", "#version", resgate.__version__, PAGE_WAIT)
    await browser.wait_text("status", "#ready", "ready", PAGE_WAIT)
    await browser.wait_text("status", "#nats-state", "connected", PAGE_WAIT)
    assert await shown_number(browser, "#ws-connections") == 0

    clients = [await connect_ws(gateway.ws_url) for _ in range(3)]
    response = await clients[0].request("auth.test.login", {"password": TOKEN_SECRET})
    assert "error" not in response, response
    for client in clients:
        assert "result" in await client.request("subscribe.test.model")
    await until_shown(browser, "#ws-connections", lambda n: n == 3)
    await browser.wait_text("status", "#top-resources", "test.model", PAGE_WAIT)
    await until_shown(browser, "#subscriptions", lambda n: n == 3)

    # Events keep flowing until the page shows a rate and the chart has drawn them.
    sent = 0
    from twisted.internet import reactor

    deadline = reactor.seconds() + PAGE_WAIT
    while await shown_number(browser, "#events-rate") == 0:
        assert reactor.seconds() < deadline, "the events rate never moved"
        for _ in range(10):
            sent += 1
            fake_service.event("test.model", "custom", {"n": sent})
        await sleep(0.2)
    await until_shown(browser, "#events-total", lambda n: n > 0)
    await until_shown(browser, "#chart-events-max", lambda n: n > 0)
    points = await browser.do("evaluate", page="status",
                              expression="document.getElementById('chart-connections').getAttribute('points')")
    assert points.count(",") >= 1

    await clients[2].close()
    await until_shown(browser, "#ws-connections", lambda n: n == 2)
    await browser.screenshot("status", "status-page")

    html = await browser.do("evaluate", page="status", expression="document.documentElement.outerHTML")
    assert TOKEN_SECRET not in html
    log = await browser.do("log", page="status")
    assert [line for line in log if line.startswith(("console.error", "console.warn", "pageerror"))] == []
    for client in clients[:2]:
        await client.close()
