"""Logging levels: quiet by default, ``-D`` debug records, ``-V`` traffic traces.

With trace on, the gateway logs every client message (``-->`` in,
``<--`` out) and every NATS message (``<==`` request or publish out, ``==>``
reply in, ``=>>`` event in, ``S=>``/``U=>`` subscribe/unsubscribe), as
Resgate's trace does. Trace records are debug events marked
``resgate_trace=True``, emitted only when trace is on; other debug records
only when debug is on. The console script and twistd print the same
records, one line each.

What a hostile client causes, a line per connection (Autobahn's warnings
for RFC 6455 breaches, refused upgrades), is logged once and then counted
per window at every level below trace; with trace, every line is logged.
"""

from __future__ import annotations

import json
import re
import signal

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from resgate.windowedlog import LOG_WINDOW
from tests.rig.aio import failure_of, sleep, within
from tests.rig.clock import ClockedReactor
from tests.rig.process import GatewayProcess, free_port
from tests.rig.resources import CUSTOM_EVENT, connect_client, expect_custom_event, subscribe_to
from tests.rig.service import FakeService
from tests.rig.wsframes import OP_TEXT, connect_raw_ws, frame

#: Markers of traced traffic, as they appear in a record's text.
CLIENT_IN, CLIENT_OUT = "-->", "<--"
NATS_OUT, NATS_REPLY, NATS_EVENT = "<==", "==>", "=>>"
TRACE_MARKERS = (CLIENT_IN, CLIENT_OUT, NATS_OUT, NATS_REPLY, NATS_EVENT)

#: The custom event as the fake service publishes it, and as the gateway sends it on.
EVENT_AS_PUBLISHED = json.dumps(CUSTOM_EVENT)
EVENT_AS_SENT = json.dumps(CUSTOM_EVENT, separators=(",", ":"))

#: One log record as the console script and twistd print it.
#: (Twisted's own legacy records, such as "[-] GatewaySite starting on 8080", have no level.)
RECORD = re.compile(
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} \[(?P<source>[^\]#]+)(?:#(?P<level>\w+))?\] (?P<text>.*)"
)


async def traffic(ws_url: str, service: FakeService) -> None:
    """What every scenario does: version, subscribe (access and get), an event, and
    an auth request and an invalid request whose messages span two lines."""
    client = await connect_client(ws_url)
    await subscribe_to(client, service, "test.model")
    await expect_custom_event(client, service, "test.model")
    # Messages spread over lines must not spread a trace record over lines.
    pending = client.request("auth.test.model.login")
    (await service.next_request()).respond(b'{"result":\r\n {"ok": true}}')
    assert (await pending)["result"] == {"payload": {"ok": True}}
    client.send_raw('{"id": 99,\n"method": "unknown"}')
    assert (await client.next_message())["id"] == 99
    await client.close()


# ---------------------------------------------------------------------------
# In-process: the log events themselves


@pytest.fixture
def events():
    """Every log event of the gateway's loggers (``resgate*``) during the test."""
    seen: list[dict] = []

    def observe(event: dict) -> None:
        if str(event.get("log_namespace", "")).startswith("resgate"):
            seen.append(event)

    globalLogPublisher.addObserver(observe)
    yield seen
    globalLogPublisher.removeObserver(observe)


async def run_traffic(gateway_factory, **settings) -> None:
    gateway = await gateway_factory(**settings)
    service = await FakeService(gateway.config.nats_url).start()
    try:
        await traffic(gateway.ws_url, service)
    finally:
        await service.stop()


def debug_texts(events: list[dict], traced: bool) -> list[str]:
    return [formatEvent(e) for e in events
            if e["log_level"] == LogLevel.debug and bool(e.get("resgate_trace")) == traced]


def markers_in(texts) -> set[str]:
    return {marker for text in texts for marker in TRACE_MARKERS if f" {marker} " in f" {text} "}


@pytest_twisted.ensureDeferred
async def test_no_debug_events_by_default(gateway_factory, events):
    await run_traffic(gateway_factory)
    assert [formatEvent(e) for e in events if e["log_level"] == LogLevel.debug] == []
    assert any(formatEvent(e).startswith("Connected to NATS at ") for e in events)


@pytest_twisted.ensureDeferred
async def test_trace_emits_only_marked_debug_events(gateway_factory, events):
    await run_traffic(gateway_factory, trace=True)
    assert debug_texts(events, traced=False) == []
    traced = debug_texts(events, traced=True)
    assert markers_in(traced) == set(TRACE_MARKERS)
    assert all("\n" not in text for text in traced), [t for t in traced if "\n" in t]


@pytest_twisted.ensureDeferred
async def test_invalid_requests_log_no_debug_events_by_default(gateway_factory, events):
    gateway = await gateway_factory()
    client = await connect_client(gateway)
    client.send_raw('{"id": 1, "method": ')
    client.send_raw('{"method": "version"}')
    await client.request("version", {"protocol": "1.2.3"})  # both were handled before this
    await client.close()
    assert [formatEvent(e) for e in events if e["log_level"] == LogLevel.debug] == []


@pytest_twisted.ensureDeferred
async def test_debug_emits_no_trace_events(gateway_factory, events):
    await run_traffic(gateway_factory, debug=True)
    assert debug_texts(events, traced=True) == []
    assert any(re.fullmatch(r"\[\w+\] Connected: .*", text) for text in debug_texts(events, traced=False))


# ---------------------------------------------------------------------------
# Hostile clients: a line per connection would let them write the log

HOSTILE_CONNECTIONS = 200
#: Connections opened at once.
HOSTILE_BATCH = 20
#: -D's own records, two a connection: asked for, not caused by the violation.
LIFECYCLE = re.compile(r"\[\w+\] (Connected: .*|Disconnected \(.*\))")


#: RFC 6455 breaches: the close code and reason Autobahn logs for each, and how many
#: "failing" lines one connection makes it log (one; or two, the second for what
#: follows the breach in the same read, as it happens).
BREACHES = {
    "unmasked": (frame(OP_TEXT, b"{}", masked=False), 1002, "unmasked client-to-server frame", (1, 1)),
    "invalid-utf8": (frame(OP_TEXT, b"\xff{}"), 1007,
                     "encountered invalid UTF-8 while processing text message at payload octet index 0", (1, 2)),
    "oversized": (frame(OP_TEXT, b"", length=2**40), 1009,
                  "received WebSocket message size 1099511627776 exceeds payload limit of 1048576 octets", (1, 2)),
}
COUNT_LINE = re.compile(r'failing WebSocket connection \(code=\.\.\.\): "\.\.\.": (\d+) more in the last 10 s')


def breaking_rfc6455(breach: bytes):
    async def connect(port: int) -> None:
        """A connection that sends ``breach`` and answers the gateway's close."""
        client = await connect_raw_ws(port)
        client.send(breach)
        await within(client.closed)
    return connect


async def knock_from_a_forbidden_origin(port: int) -> None:
    error = await failure_of(defer.ensureDeferred(connect_raw_ws(port, headers={"Origin": "http://evil.example"})))
    assert str(error) == "HTTP/1.1 403 Forbidden", error


async def hostile_run(gateway_factory, gateway_lines, connect, **settings) -> tuple[list[str], ClockedReactor]:
    """The lines ``HOSTILE_CONNECTIONS`` connections made by ``connect`` cause, less -D's own records."""
    clock = ClockedReactor()
    gateway = await gateway_factory(reactor=clock, allow_origin="http://app.example", **settings)
    gateway_lines.lines.clear()
    for _ in range(HOSTILE_CONNECTIONS // HOSTILE_BATCH):
        await within(defer.gatherResults([defer.ensureDeferred(connect(gateway.port))
                                          for _ in range(HOSTILE_BATCH)], consumeErrors=True), 30)
    await sleep(0.1)  # the gateway sees the last closes a moment after the clients do
    return clock, [line for line in gateway_lines.lines if not LIFECYCLE.fullmatch(line)]


@pytest.mark.parametrize("breach", BREACHES)
@pytest.mark.parametrize("settings", [{}, {"debug": True}], ids=["default", "debug"])
@pytest_twisted.ensureDeferred
async def test_rfc6455_breaches_are_logged_once_then_counted(gateway_factory, gateway_lines, settings, breach):
    sent, code, reason, (fewest, most) = BREACHES[breach]
    clock, lines = await hostile_run(gateway_factory, gateway_lines, breaking_rfc6455(sent), **settings)
    # The first connection's lines (Autobahn's drop of a connection it failed is one more kind).
    assert lines[0] == f'failing WebSocket connection (code={code}): "{reason}"'
    assert len(lines) <= 2, lines
    gateway_lines.lines.clear()
    clock.advance(LOG_WINDOW)
    assert len(gateway_lines.lines) <= 2, gateway_lines.lines
    counts = [int(m[1]) for m in map(COUNT_LINE.fullmatch, gateway_lines.lines) if m]
    assert len(counts) == 1, gateway_lines.lines
    assert HOSTILE_CONNECTIONS * fewest - 1 <= counts[0] <= HOSTILE_CONNECTIONS * most - 1
    # A quiet window ends the count.
    gateway_lines.lines.clear()
    clock.advance(LOG_WINDOW)
    assert gateway_lines.lines == []


@pytest_twisted.ensureDeferred
async def test_refused_upgrades_are_logged_once_then_counted(gateway_factory, gateway_lines):
    clock, lines = await hostile_run(gateway_factory, gateway_lines, knock_from_a_forbidden_origin)
    assert len(lines) == 2, lines
    assert lines[0] == "failing WebSocket opening handshake ('Forbidden origin')"
    assert re.fullmatch(r"dropping connection to peer tcp4:127\.0\.0\.1:\d+ with abort=False: Forbidden origin",
                        lines[1]), lines
    gateway_lines.lines.clear()
    clock.advance(LOG_WINDOW)
    assert sorted(gateway_lines.lines) == [
        f"dropping connection to peer ... with abort=...: ...: {HOSTILE_CONNECTIONS - 1} more in the last 10 s",
        f"failing WebSocket opening handshake ('...'): {HOSTILE_CONNECTIONS - 1} more in the last 10 s",
    ]


@pytest_twisted.ensureDeferred
async def test_trace_logs_every_breach(gateway_factory, gateway_lines):
    sent, code, reason, _ = BREACHES["unmasked"]
    clock, lines = await hostile_run(gateway_factory, gateway_lines, breaking_rfc6455(sent), trace=True)
    breaches = [line for line in lines if line.startswith("failing WebSocket connection")]
    assert breaches == [f'failing WebSocket connection (code={code}): "{reason}"'] * HOSTILE_CONNECTIONS
    gateway_lines.lines.clear()
    clock.advance(LOG_WINDOW)
    assert gateway_lines.lines == []


# ---------------------------------------------------------------------------
# The console script and twistd: what an operator reads


@pytest.fixture(params=[False, True], ids=["resgate", "twistd"])
def run_process(request):
    """``await run_process(*flags)``: the output of a gateway process that served ``traffic``."""
    processes: list[GatewayProcess] = []

    async def run(*flags: str) -> list[re.Match]:
        nats_url = f"nats://127.0.0.1:{free_port()}"
        process = GatewayProcess("--nats", nats_url, "--embed-nats", "-i", "127.0.0.1", "-p", str(free_port()),
                                 *flags, twistd=request.param)
        processes.append(process)
        port = process.wait_listening()
        service = await FakeService(nats_url).start()
        try:
            await traffic(f"ws://127.0.0.1:{port}/", service)
        finally:
            await service.stop()
        await sleep(0.1)  # the gateway sees the close a moment after the client does
        # twistd ends with the signal that stopped it.
        assert process.stop() == (-signal.SIGTERM if request.param else 0), process.output()
        output = process.output()
        lines = output.splitlines()
        records = [RECORD.fullmatch(line) for line in lines]
        assert all(records), f"lines that are not one whole record: {[l for l, r in zip(lines, records) if not r]}"
        return records

    yield run
    for process in processes:
        process.cleanup()


def resgate_debug(records: list[re.Match]) -> list[str]:
    return [r["text"] for r in records if r["source"].startswith("resgate") and r["level"] == "debug"]


@pytest_twisted.ensureDeferred
async def test_trace_flag_shows_client_and_nats_traffic(run_process):
    texts = resgate_debug(await run_process("-V"))
    assert markers_in(texts) == set(TRACE_MARKERS)
    cid = re.fullmatch(r"\[(\w+)\] --> .*", next(t for t in texts if " --> " in t))[1]
    assert f'[{cid}] --> {{"id": 2, "method": "subscribe.test.model"}}' in texts
    assert f'[{cid}] <-- {{"event":"test.model.custom","data":{EVENT_AS_SENT}}}' in texts
    assert any(re.fullmatch(r"<== \(\S+\) access\.test\.model: \{.*\}", t) for t in texts), texts
    assert any(re.fullmatch(r"==> \(\S+\): \{\"result\": \{\"get\": true\}\}", t) for t in texts), texts
    assert f"=>> event.test.model.custom: {EVENT_AS_PUBLISHED}" in texts
    assert "S=> event.test.model.*" in texts
    # -V alone traces traffic; connection lifecycle records are -D's.
    assert not any(" Connected: " in t for t in texts)
    # Line breaks in messages are escaped, in both directions.
    assert f'[{cid}] --> {{"id": 99,\\n"method": "unknown"}}' in texts
    assert any(re.fullmatch(r'==> \(\S+\): \{"result":\\r\\n \{"ok": true\}\}', t) for t in texts), texts


@pytest_twisted.ensureDeferred
async def test_debug_flag_shows_debug_records_but_no_traffic(run_process):
    texts = resgate_debug(await run_process("-D"))
    assert any(re.fullmatch(r"\[\w+\] Connected: tcp4:127\.0\.0\.1:\d+", t) for t in texts), texts
    assert any(re.fullmatch(r"\[\w+\] Disconnected \(.*\)", t) for t in texts), texts
    assert markers_in(texts) == set()


@pytest_twisted.ensureDeferred
async def test_both_flags_show_debug_records_and_traffic(run_process):
    texts = resgate_debug(await run_process("-DV"))
    assert markers_in(texts) == set(TRACE_MARKERS)
    assert any(" Connected: " in t for t in texts)


@pytest_twisted.ensureDeferred
async def test_no_flag_shows_no_debug_records(run_process):
    records = await run_process()
    assert resgate_debug(records) == []
    texts = [r["text"] for r in records]
    assert any(t.startswith("Connected to NATS at nats://127.0.0.1:") for t in texts), texts
    assert any(t.startswith("Listening on 127.0.0.1:") for t in texts), texts
    assert markers_in(texts) == set()
