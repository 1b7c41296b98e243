"""The six example apps (examples/), each in a real browser.

Every test starts what a user would: the gateway (in-process, on the shared
nats-server), the example's Python service as a subprocess
(``examples/<name>/server.py``, serving its page on a free port), and
headless Chromium (Debian's ``/usr/bin/chromium``) driven by playwright-core
from Node (``tests/browser/driver.mjs``). Each test opens the page twice
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
import shutil
import sys
from pathlib import Path

import pytest
import pytest_twisted
import treq
from twisted.internet import defer, error, protocol

from resgate.config import Config
from resgate.service import GatewayService
from tests.rig.aio import within
from tests.rig.process import free_port
from tests.rig.ws import connect_ws

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
DRIVER_DIR = Path(__file__).resolve().parent / "browser"
DRIVER = DRIVER_DIR / "driver.mjs"
ARTIFACTS = ROOT / "test-artifacts" / "examples"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
#: Bound on one browser command, beyond the driver's own bound on its waits.
COMMAND_WAIT = 20.0
START_WAIT = 20.0

# The gateway must log no error while the examples run.
pytestmark = [pytest.mark.timeout(90), pytest.mark.usefixtures("logged_errors")]


def _reactor():
    from twisted.internet import reactor

    return reactor


# --- processes ------------------------------------------------------------------

class LineProcess(protocol.ProcessProtocol):
    """A child process whose stdout arrives as lines; output is kept for reports."""

    def __init__(self) -> None:
        self.output = b""
        self.stderr = b""
        self._buffer = b""
        self.ended: defer.Deferred = defer.Deferred()
        self.exit_code: int | None = None

    def outReceived(self, data: bytes) -> None:
        self.output += data
        self._buffer += data
        *complete, self._buffer = self._buffer.split(b"\n")
        for line in complete:
            self.line_received(line)

    def errReceived(self, data: bytes) -> None:
        self.stderr += data

    def line_received(self, line: bytes) -> None:
        pass

    def processEnded(self, reason) -> None:
        value = reason.value
        self.exit_code = value.exitCode if isinstance(value, error.ProcessTerminated) else 0
        self.ended.callback(self.exit_code)

    @property
    def running(self) -> bool:
        return not self.ended.called

    async def stop(self, timeout: float = 10.0) -> None:
        if not self.running:
            return
        try:
            self.transport.signalProcess("TERM")
        except error.ProcessExitedAlready:
            return
        try:
            await within(self.ended, timeout)
        except defer.TimeoutError:
            self.transport.signalProcess("KILL")
            await within(self.ended, 5)

    def describe(self) -> str:
        return (f"stdout: {self.output.decode(errors='replace')}\n"
                f"stderr: {self.stderr.decode(errors='replace')}")


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


class Browser(LineProcess):
    """Node running tests/browser/driver.mjs: one Chromium, commands over stdin."""

    def __init__(self, artifacts: Path) -> None:
        super().__init__()
        self.artifacts = artifacts
        self._next_id = 1
        self._pending: dict[int, defer.Deferred] = {}
        self.ready: defer.Deferred = defer.Deferred()
        self.pages: list[str] = []

    def line_received(self, line: bytes) -> None:
        if not line.strip():
            return
        try:
            answer = json.loads(line)
        except ValueError:
            return
        if answer.get("id") == 0 and not self.ready.called:
            self.ready.callback(answer.get("result"))
            return
        d = self._pending.pop(answer.get("id"), None)
        if d is not None:
            d.callback(answer)

    def processEnded(self, reason) -> None:
        super().processEnded(reason)
        failure = AssertionError(f"the browser driver exited ({self.exit_code}); {self.describe()}")
        if not self.ready.called:
            self.ready.errback(failure)
        pending, self._pending = self._pending, {}
        for d in pending.values():
            d.errback(failure)

    async def _send(self, cmd: str, timeout: float = COMMAND_WAIT, **args) -> dict:
        if not self.running:
            raise AssertionError(f"the browser driver has exited; {self.describe()}")
        command_id = self._next_id
        self._next_id += 1
        d: defer.Deferred = defer.Deferred()
        self._pending[command_id] = d
        self.transport.write(json.dumps({"id": command_id, "cmd": cmd, **args}).encode() + b"\n")
        try:
            return await within(d, timeout)
        except defer.TimeoutError:
            self._pending.pop(command_id, None)
            raise AssertionError(f"browser command {cmd} {args} got no answer in {timeout}s")

    async def do(self, cmd: str, **args):
        """Run one driver command; a failure screenshots every page and fails the test."""
        answer = await self._send(cmd, **args)
        if answer.get("ok"):
            return answer.get("result")
        details = [f"browser command {cmd} {args} failed: {answer.get('error')}"]
        for page in self.pages:
            try:
                shot = await self._send("screenshot", page=page, name=f"failure-{page}")
                log = await self._send("log", page=page)
                details.append(f"page {page}: screenshot {shot.get('result')}; log: {log.get('result')}")
            except AssertionError as e:
                details.append(f"page {page}: {e}")
        raise AssertionError("\n".join(details))

    # Conveniences, each one driver command.

    async def open(self, page: str, url: str, context: str = "default") -> None:
        await self.do("open", page=page, context=context)
        self.pages.append(page)
        status = await self.do("goto", page=page, url=url)
        assert status == 200, f"{url} answered {status}"

    async def wait_text(self, page: str, selector: str, text: str, timeout: float = 10.0) -> str:
        return await self.do("waitText", page=page, selector=selector, text=text, timeout=int(timeout * 1000))

    async def wait_no_text(self, page: str, selector: str, text: str, timeout: float = 10.0) -> str:
        return await self.do("waitNoText", page=page, selector=selector, text=text, timeout=int(timeout * 1000))

    async def wait_value(self, page: str, selector: str, value: str) -> None:
        await self.do("waitValue", page=page, selector=selector, value=value)

    async def wait_gone(self, page: str, selector: str) -> None:
        await self.do("waitGone", page=page, selector=selector)

    async def text(self, page: str, selector: str) -> str:
        return await self.do("text", page=page, selector=selector)

    async def count(self, page: str, selector: str) -> int:
        return await self.do("count", page=page, selector=selector)

    async def fill(self, page: str, selector: str, value: str) -> None:
        await self.do("fill", page=page, selector=selector, value=value)

    async def click(self, page: str, selector: str) -> None:
        await self.do("click", page=page, selector=selector)

    async def screenshot(self, page: str, name: str) -> str:
        return await self.do("screenshot", page=page, name=name)

    async def page_errors(self, page: str) -> list[str]:
        return [line for line in await self.do("log", page=page) if line.startswith("pageerror")]

    async def assert_no_page_errors(self) -> None:
        for page in self.pages:
            assert await self.page_errors(page) == [], f"page {page} threw"


def check_browser_tools() -> list[str]:
    """``[node, driver.mjs]``, or fail the test saying what scripts/setup installs."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: install Node.js and npm, then run scripts/setup")
    if not (DRIVER_DIR / "node_modules" / "playwright-core" / "package.json").is_file():
        pytest.fail("tests/browser/node_modules/playwright-core is missing: run scripts/setup")
    if not (EXAMPLES / "node_modules" / "resclient" / "dist" / "resclient.min.js").is_file():
        pytest.fail("examples/node_modules/resclient is missing: run scripts/setup")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: scripts/setup installs Debian's chromium when run as root")
    return [node, str(DRIVER)]


@pytest_twisted.async_yield_fixture
async def browser(request):
    """A headless Chromium for the test; screenshots under test-artifacts/examples/<test>/."""
    command = check_browser_tools()
    artifacts = ARTIFACTS / request.node.name
    shutil.rmtree(artifacts, ignore_errors=True)
    artifacts.mkdir(parents=True)
    driver = Browser(artifacts)
    _reactor().spawnProcess(driver, command[0], [*command, str(artifacts), "80000"],
                            env={**os.environ, "CHROMIUM": CHROMIUM}, path=str(DRIVER_DIR))
    try:
        await within(driver.ready, START_WAIT)
    except defer.TimeoutError:
        await driver.stop()
        pytest.fail(f"the browser did not start in {START_WAIT}s; {driver.describe()}")
    yield driver
    if driver.running:
        driver.transport.write(b'{"cmd": "exit"}\n')
        try:
            await within(driver.ended, 10)
        except defer.TimeoutError:
            await driver.stop()


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
