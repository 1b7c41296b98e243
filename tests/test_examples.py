"""The six example apps (examples/), each in a real browser.

Every test starts what a user would: the gateway (in-process, on the shared
nats-server), the example's Python service as a subprocess
(``examples/<name>/server.py``, serving its page on a free port), and
headless Chromium (``tests/rig/browser.py``). Each test opens the page twice
and checks that an action in one page shows in the other. Screenshots go
to ``test-artifacts/examples/<test>/`` (gitignored); a failing step adds
``failure-<page>.png`` for every open page.

Chromium, Node and the npm packages come from ``scripts/setup``; without
them these tests fail, they do not skip.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest
import pytest_twisted
import treq
from twisted.internet import defer

from resgate.config import Config
from resgate.service import GatewayService
from tests.rig.aio import within
from tests.rig.browser import START_WAIT, LineProcess, launch_browser
from tests.rig.process import free_port
from tests.rig.ws import connect_ws

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
ARTIFACTS = ROOT / "test-artifacts" / "examples"

# The gateway must log no error while the examples run.
pytestmark = [pytest.mark.timeout(90), pytest.mark.usefixtures("logged_errors")]


def _reactor():
    from twisted.internet import reactor

    return reactor


# --- processes ------------------------------------------------------------------

class ExampleService(LineProcess):
    """``examples/<name>/server.py``: its RES service and its page."""

    _AVAILABLE = re.compile(rb"Client available at (http://\S+)")

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.url: str | None = None
        self.available: defer.Deferred = defer.Deferred()

    def line_received(self, line: bytes) -> None:
        match = self._AVAILABLE.search(line)
        if match and not self.available.called:
            self.url = match.group(1).decode()
            self.available.callback(self.url)

    def processEnded(self, reason) -> None:
        super().processEnded(reason)
        if not self.available.called:
            self.available.errback(AssertionError(
                f"examples/{self.name}/server.py exited ({self.exit_code}) before serving; {self.describe()}"))


async def start_example(name: str, nats_url: str, gateway: GatewayService) -> ExampleService:
    server = EXAMPLES / name / "server.py"
    process = ExampleService(name)
    args = [sys.executable, str(server), "--nats", nats_url, "--port", "0", "--resgate", gateway.ws_url]
    _reactor().spawnProcess(process, sys.executable, args, env=dict(os.environ), path=str(ROOT))
    try:
        await within(process.available, START_WAIT)
    except defer.TimeoutError:
        await process.stop()
        raise AssertionError(f"examples/{name}/server.py not serving after {START_WAIT}s; {process.describe()}")
    return process


@pytest_twisted.async_yield_fixture
async def browser(request):
    """A headless Chromium for the test; screenshots under test-artifacts/examples/<test>/."""
    if not (EXAMPLES / "node_modules" / "resclient" / "dist" / "resclient.min.js").is_file():
        pytest.fail("examples/node_modules/resclient is missing: run scripts/setup")
    driver = await launch_browser(ARTIFACTS / request.node.name)
    yield driver
    await driver.exit()


@pytest_twisted.async_yield_fixture
async def example(nats_server):
    """``await example(name, gateway)`` starts examples/<name>/server.py; stopped after the test."""
    started: list[ExampleService] = []

    async def start(name: str, gateway: GatewayService) -> ExampleService:
        process = await start_example(name, nats_server.url, gateway)
        started.append(process)
        return process

    yield start
    for process in started:
        await process.stop()


# --- the examples ---------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_hello_world(gateway_factory, example, browser):
    gateway = await gateway_factory()
    service = await example("hello-world", gateway)

    await browser.open("a", service.url)
    await browser.open("b", service.url, context="other")
    for page in ("a", "b"):
        await browser.wait_text(page, "#message", "Hello, World!")
    await browser.screenshot("a", "hello-world")

    # The same model over HTTP, as the README says.
    response = await within(treq.get(f"http://127.0.0.1:{gateway.port}/api/example/model"), 10)
    assert response.code == 200
    assert json.loads(await within(treq.content(response), 10)) == {"message": "Hello, World!"}
    await browser.assert_no_page_errors()


def book(book_id: int, part: str = "") -> str:
    """The selector of a book's list item on the Book Collection page (or a part of it)."""
    return f'#books [data-rid="library.book.{book_id}"] {part}'.strip()


@pytest_twisted.ensureDeferred
async def test_book_collection(gateway_factory, example, browser):
    gateway = await gateway_factory()
    service = await example("book-collection", gateway)

    await browser.open("a", service.url)
    await browser.open("b", service.url, context="other")
    for page in ("a", "b"):
        await browser.wait_text(page, book(3, ".title"), "Coraline")
    assert await browser.count("b", "#books .list-item") == 3

    # Add in one page, see it in the other.
    await browser.fill("a", "#new-title", "Dracula")
    await browser.fill("a", "#new-author", "Bram Stoker")
    await browser.click("a", "#add-new")
    await browser.wait_text("b", book(4, ".title"), "Dracula")
    await browser.wait_text("b", book(4, ".author"), "By Bram Stoker")
    await browser.wait_value("a", "#new-title", "")  # cleared once added

    # A validation error shows in the page that made it, and changes nothing.
    await browser.fill("a", "#new-title", "Nameless")
    await browser.click("a", "#add-new")
    await browser.wait_text("a", "#error-msg", "Must provide both title and author")
    await browser.screenshot("a", "validation-error")
    assert await browser.text("b", "#error-msg") == ""

    # Rename in the other page.
    await browser.click("b", book(1, ".edit-button"))
    await browser.fill("b", book(1, ".title-input"), "Animal Farming")
    await browser.click("b", book(1, ".ok-button"))
    await browser.wait_text("a", book(1, ".title"), "Animal Farming")
    await browser.wait_text("a", book(1, ".author"), "George Orwell")

    await browser.click("b", book(3, ".edit-button"))
    await browser.fill("b", book(3, ".title-input"), "   ")
    await browser.click("b", book(3, ".ok-button"))
    await browser.wait_text("b", "#error-msg", "Title must not be empty")
    await browser.click("b", book(3, ".cancel-button"))

    # Delete.
    await browser.click("a", book(2, ".delete-button"))
    await browser.wait_gone("b", book(2))
    await browser.wait_gone("a", book(2))
    for page in ("a", "b"):
        titles = [await browser.text(page, book(i, ".title")) for i in (1, 3, 4)]
        assert titles == ["Animal Farming", "Coraline", "Dracula"], page
        assert await browser.count(page, "#books .list-item") == 3
    await browser.screenshot("a", "book-collection-a")
    await browser.screenshot("b", "book-collection-b")

    # The service's truth over HTTP: what the pages show.
    response = await within(treq.get(f"http://127.0.0.1:{gateway.port}/api/library/books"), 10)
    assert response.code == 200
    books = json.loads(await within(treq.content(response), 10))
    assert [(b["model"]["title"], b["model"]["author"]) for b in books] == [
        ("Animal Farming", "George Orwell"), ("Coraline", "Neil Gaiman"), ("Dracula", "Bram Stoker")]
    await browser.assert_no_page_errors()


@pytest_twisted.ensureDeferred
async def test_edit_text(gateway_factory, example, browser):
    gateway = await gateway_factory()
    service = await example("edit-text", gateway)

    await browser.open("a", service.url)
    await browser.open("b", service.url, context="other")
    for page in ("a", "b"):
        await browser.wait_value(page, "#message", "Edit me!")

    await browser.fill("a", "#message", "Edited in page a")
    await browser.wait_value("b", "#message", "Edited in page a")
    await browser.fill("b", "#message", "And now in page b")
    await browser.wait_value("a", "#message", "And now in page b")

    # Typed key by key, every keystroke a set call: the other page ends on the full text.
    await browser.do("type", page="b", selector="#message", text="typed live")
    await browser.wait_value("a", "#message", "typed live")
    await browser.screenshot("a", "edit-text-a")
    await browser.screenshot("b", "edit-text-b")

    response = await within(treq.get(f"http://127.0.0.1:{gateway.port}/api/example/shared"), 10)
    assert json.loads(await within(treq.content(response), 10)) == {"message": "typed live"}
    await browser.assert_no_page_errors()


async def seconds_shown(browser: Browser, page: str) -> int:
    text = await browser.wait_text(page, "#message", "Seconds since service start: ")
    return int(text.rsplit(" ", 1)[1])


async def wait_ticking(browser: Browser, page: str, timeout: float = 5) -> int:
    """Wait until the page's counter moves on; the new count."""
    before = await seconds_shown(browser, page)
    await browser.wait_no_text(page, "#message", f"start: {before}", timeout=timeout)
    return await seconds_shown(browser, page)


@pytest_twisted.ensureDeferred
async def test_password_authentication(gateway_factory, example, browser):
    gateway = await gateway_factory()
    service = await example("password-authentication", gateway)

    await browser.open("a", service.url)
    await browser.open("b", service.url, context="other")
    for page in ("a", "b"):
        await browser.wait_text(page, "#message", "Login to see the counter")

    # Without a token, no access.
    denied = await browser.do("evaluate", page="b", expression=(
        "client.get('ticker.model').then(() => 'granted', err => err.code)"))
    assert denied == "system.accessDenied"

    await browser.fill("a", "#password", "guess")
    await browser.click("a", "#login")
    await browser.wait_text("a", "#error", "wrong password")

    await browser.fill("a", "#password", "secret")
    await browser.click("a", "#login")
    await wait_ticking(browser, "a")
    assert await browser.text("b", "#message") == "Login to see the counter"

    await browser.fill("b", "#password", "secret")
    await browser.click("b", "#login")
    seconds_b = await wait_ticking(browser, "b")
    assert abs(await seconds_shown(browser, "a") - seconds_b) <= 1  # one ticker for both
    await browser.screenshot("a", "logged-in-a")

    # Logging out in a: the gateway unsubscribes a's ticker; b's goes on.
    await browser.click("a", "#logout")
    stopped = await browser.wait_text("a", "#message", "Access lost (counter stopped at")
    await wait_ticking(browser, "b")
    await wait_ticking(browser, "b")
    assert await browser.text("a", "#message") == stopped
    await browser.screenshot("a", "logged-out-a")
    await browser.screenshot("b", "logged-in-b")

    # And in again.
    await browser.fill("a", "#password", "secret")
    await browser.click("a", "#login")
    await wait_ticking(browser, "a")
    await browser.assert_no_page_errors()


@pytest_twisted.ensureDeferred
async def test_jwt_authentication(gateway_factory, example, browser):
    # As the README says: header auth for HTTP requests and WebSocket upgrades.
    gateway = await gateway_factory(header_auth="auth.jwtHeader", ws_header_auth="auth.jwtHeader")
    service = await example("jwt-authentication", gateway)
    api = f"http://127.0.0.1:{gateway.port}/api/example/model"

    # No cookie: access denied, in the page and over HTTP.
    await browser.open("a1", service.url, context="alice")
    await browser.wait_text("a1", "#root", "Access denied")
    await browser.screenshot("a1", "denied")
    response = await within(treq.get(api), 10)
    await within(treq.content(response), 10)
    assert response.code in (401, 403)

    # /login sets the cookie; back on the page, the model shows.
    await browser.click("a1", "#login")
    await browser.wait_text("a1", "body", "cookie is now set")
    await browser.click("a1", "#back")
    await browser.wait_value("a1", "#message", "Hello, secure World!")

    # A second page with the cookie edits; the first sees it. Another
    # browser (no cookie) is still denied.
    await browser.open("a2", service.url, context="alice")
    await browser.wait_value("a2", "#message", "Hello, secure World!")
    await browser.open("b", service.url, context="bob")
    await browser.wait_text("b", "#root", "Access denied")
    await browser.fill("a2", "#message", "Edited with a token")
    await browser.wait_value("a1", "#message", "Edited with a token")
    await browser.screenshot("a1", "granted")

    # The cookie's JWT opens the HTTP API too (--headauth).
    cookies = {c["name"]: c["value"] for c in await browser.do("cookies", context="alice")}
    response = await within(treq.get(api, headers={"Cookie": f"access-token={cookies['access-token']}"}), 10)
    assert response.code == 200
    assert json.loads(await within(treq.content(response), 10)) == {"message": "Edited with a token"}

    # And a WebSocket upgrade carrying it is authenticated by the gateway
    # itself (--wsheadauth), with no auth request from the client.
    ws = await connect_ws(gateway.ws_url, headers={"Cookie": f"access-token={cookies['access-token']}"})
    try:
        answer = await ws.request("subscribe.example.model")
        assert answer["result"]["models"]["example.model"] == {"message": "Edited with a token"}, answer
    finally:
        await ws.close()

    # /logout clears it: a reloaded page is denied again.
    await browser.click("a2", "#logout")
    await browser.wait_text("a2", "body", "cookie is now cleared")
    await browser.click("a2", "#back")
    await browser.wait_text("a2", "#root", "Access denied")
    await browser.assert_no_page_errors()


async def start_gateway_on(port: int, nats_url: str) -> GatewayService:
    gateway = GatewayService(Config(addr="127.0.0.1", port=port, nats_url=nats_url))
    gateway.startService()
    await within(gateway.when_started(), 15)
    return gateway


async def logged_in_as(browser: Browser, page: str, name: str) -> None:
    await browser.wait_text(page, "#name", name)
    await browser.do("waitVisible", page=page, selector="#logout-panel")


@pytest_twisted.ensureDeferred
async def test_client_session(nats_server, example, browser):
    # A gateway of the test's own, to restart on the same port.
    port = free_port()
    gateway = await start_gateway_on(port, nats_server.url)
    try:
        service = await example("client-session", gateway)

        await browser.open("a", service.url, context="alice")
        await browser.open("b", service.url, context="bob")
        for page in ("a", "b"):
            await browser.do("waitVisible", page=page, selector="#login-panel")

        await browser.fill("a", "#username", "jane")
        await browser.fill("a", "#password", "wrong")
        await browser.click("a", "#login")
        await browser.wait_text("a", "#error", "Wrong username or password")

        await browser.fill("a", "#password", "jane")
        await browser.click("a", "#login")
        await logged_in_as(browser, "a", "Jane Doe")
        await wait_ticking(browser, "a")

        await browser.fill("b", "#username", "john")
        await browser.fill("b", "#password", "john")
        await browser.click("b", "#login")
        await logged_in_as(browser, "b", "John Doe")
        await wait_ticking(browser, "b")
        assert await browser.text("a", "#name") == "Jane Doe"  # two sessions, one each

        # A reload resumes the session with the relogin key.
        await browser.do("reload", page="a")
        await logged_in_as(browser, "a", "Jane Doe")
        await wait_ticking(browser, "a")
        await browser.screenshot("a", "after-reload")

        # So does a reconnect to a restarted gateway (ResClient retries every 3 s).
        await within(gateway.stopService(), 15)
        gateway = await start_gateway_on(port, nats_server.url)
        for page, name in (("a", "Jane Doe"), ("b", "John Doe")):
            await wait_ticking(browser, page, timeout=15)
            await logged_in_as(browser, page, name)
        await browser.screenshot("b", "after-gateway-restart")

        # Logging out ends a's session and its counter; b's goes on.
        await browser.click("a", "#logout")
        await browser.do("waitVisible", page="a", selector="#login-panel")
        await browser.wait_text("a", "#message", "Login to see the counter")
        await wait_ticking(browser, "b")
        await browser.screenshot("a", "logged-out")
        assert await browser.text("a", "#error") == ""
        await browser.assert_no_page_errors()
    finally:
        await within(gateway.stopService(), 15)
