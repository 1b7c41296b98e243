"""Headless Chromium for tests: Debian's /usr/bin/chromium driven by playwright-core from Node.

``launch_browser(artifacts)`` starts ``tests/browser/driver.mjs`` (one
Chromium, commands as JSON lines over stdin) and returns a ``Browser``;
screenshots go to ``artifacts``, and a failing command adds
``failure-<page>.png`` for every open page there. Node and the npm
packages come from ``scripts/setup``; without them a test fails, it does
not skip. ``LineProcess`` is the child process with line-wise stdout both
the driver and the examples' services are.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from twisted.internet import defer, error, protocol

from tests.rig.aio import within

DRIVER_DIR = Path(__file__).resolve().parent.parent / "browser"
DRIVER = DRIVER_DIR / "driver.mjs"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
#: Bound on one browser command, beyond the driver's own bound on its waits.
COMMAND_WAIT = 20.0
#: Bound on a child process starting to serve (the browser, an example's service).
START_WAIT = 20.0
#: The driver exits by itself after this many milliseconds, whatever it is doing.
DRIVER_LIFETIME_MS = "80000"


def _reactor():
    from twisted.internet import reactor

    return reactor


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


    async def exit(self) -> None:
        """Close the browser; killed if it does not exit in time."""
        if not self.running:
            return
        self.transport.write(b'{"cmd": "exit"}\n')
        try:
            await within(self.ended, 10)
        except defer.TimeoutError:
            await self.stop()


def check_browser_tools() -> list[str]:
    """``[node, driver.mjs]``, or fail the test saying what scripts/setup installs."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: install Node.js and npm, then run scripts/setup")
    if not (DRIVER_DIR / "node_modules" / "playwright-core" / "package.json").is_file():
        pytest.fail("tests/browser/node_modules/playwright-core is missing: run scripts/setup")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: scripts/setup installs Debian's chromium when run as root")
    return [node, str(DRIVER)]


async def launch_browser(artifacts: Path) -> Browser:
    """A started headless Chromium whose screenshots go to ``artifacts`` (emptied first)."""
    command = check_browser_tools()
    shutil.rmtree(artifacts, ignore_errors=True)
    artifacts.mkdir(parents=True)
    driver = Browser(artifacts)
    _reactor().spawnProcess(driver, command[0], [*command, str(artifacts), DRIVER_LIFETIME_MS],
                            env={**os.environ, "CHROMIUM": CHROMIUM}, path=str(DRIVER_DIR))
    try:
        await within(driver.ready, START_WAIT)
    except defer.TimeoutError:
        await driver.stop()
        pytest.fail(f"the browser did not start in {START_WAIT}s; {driver.describe()}")
    return driver
