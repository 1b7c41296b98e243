"""ResClient under Node: tests/resclient/scenario.mjs as a process that prints JSON lines and takes commands.

Node and the packages come from ``scripts/setup`` (``npm ci`` in
tests/resclient); without them the tests that use it fail, they do not skip.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from twisted.internet import defer, error, protocol

from tests.rig.aio import within

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "resclient"
SCENARIO = SCENARIO_DIR / "scenario.mjs"
#: Node's own bound on the scenario (ms); the test's waits are shorter.
NODE_TIMEOUT_MS = 25000
WAIT = 10.0


def node_command() -> list[str]:
    """``[node, scenario.mjs]``, or fail the test saying how to get them."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed (needed for the ResClient test): "
                    "install Node.js and npm, then run scripts/setup")
    for package in ("resclient", "ws"):
        if not (SCENARIO_DIR / "node_modules" / package / "package.json").is_file():
            pytest.fail(f"tests/resclient/node_modules/{package} is missing: run scripts/setup "
                        "(it runs `npm ci` in tests/resclient)")
    return [node, str(SCENARIO)]


class NodeScenario(protocol.ProcessProtocol):
    """The node process: JSON lines out as they come, JSON commands in."""

    def __init__(self) -> None:
        self.lines: list[dict] = []
        self.seen: list[dict] = []
        self._waiting: list[defer.Deferred] = []
        self._buffer = b""
        self.stderr = b""
        self.ended: defer.Deferred = defer.Deferred()
        self.exit_code: int | None = None

    def outReceived(self, data: bytes) -> None:
        self._buffer += data
        *complete, self._buffer = self._buffer.split(b"\n")
        for raw in complete:
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
            except ValueError:
                line = {"error": f"not a JSON line: {raw!r}"}
            self.seen.append(line)
            if self._waiting:
                self._waiting.pop(0).callback(line)
            else:
                self.lines.append(line)

    def errReceived(self, data: bytes) -> None:
        self.stderr += data

    def processEnded(self, reason) -> None:
        self.exit_code = reason.value.exitCode if isinstance(reason.value, error.ProcessTerminated) else 0
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.errback(AssertionError(f"node exited ({self.exit_code}) early; {self.describe()}"))
        self.ended.callback(self.exit_code)

    def describe(self) -> str:
        return f"stdout lines: {self.seen!r}; stderr: {self.stderr.decode(errors='replace')}"

    def next_line(self, timeout: float = WAIT) -> defer.Deferred:
        if self.lines:
            return defer.succeed(self.lines.pop(0))
        if self.ended.called:
            return defer.fail(AssertionError(f"node has exited ({self.exit_code}); {self.describe()}"))
        d: defer.Deferred = defer.Deferred()
        self._waiting.append(d)
        return within(d, timeout)

    async def expect(self, key: str, timeout: float = WAIT) -> dict:
        """The next line, which must carry ``key`` (an error line fails the test)."""
        return await self.expect_one_of(key, timeout=timeout)

    async def expect_one_of(self, *keys: str, timeout: float = WAIT) -> dict:
        """The next line, which must carry one of ``keys``."""
        try:
            line = await self.next_line(timeout)
        except defer.TimeoutError:
            raise AssertionError(f"no line from node within {timeout}s (wanted {keys}); {self.describe()}")
        assert "error" not in line, f"node reported an error: {line['error']}; {self.describe()}"
        assert any(key in line for key in keys), f"expected a {keys} line, got {line!r}; {self.describe()}"
        return line

    def send(self, command: dict) -> None:
        self.transport.write(json.dumps(command).encode() + b"\n")

    def kill(self) -> None:
        if not self.ended.called:
            try:
                self.transport.signalProcess("KILL")
            except error.ProcessExitedAlready:
                pass

    async def exit_cleanly(self) -> dict:
        """Ask the scenario to exit; its last snapshot, once it exited 0 with nothing more to say."""
        self.send({"cmd": "exit"})
        final = (await self.expect("snapshot"))["snapshot"]
        code = await within(self.ended, WAIT)
        assert code == 0, self.describe()
        assert not self.lines, f"unexpected extra output: {self.lines!r}"
        return final

    async def stop(self) -> None:
        """Kill the scenario if it still runs, and wait until it has ended."""
        self.kill()
        if not self.ended.called:
            await within(self.ended, WAIT)


def spawn_node(ws_url: str, model: str, collection: str) -> NodeScenario:
    """Start scenario.mjs against ``ws_url`` for resources ``model`` and ``collection``."""
    from twisted.internet import reactor

    command = node_command()
    scenario = NodeScenario()
    args = [*command, ws_url, model, collection, str(NODE_TIMEOUT_MS)]
    reactor.spawnProcess(scenario, command[0], args, env=dict(os.environ), path=str(SCENARIO_DIR))
    return scenario
