"""Logging levels: quiet by default, ``-D`` debug records, ``-V`` traffic traces.

With trace on, the gateway logs every client message (``-->`` in,
``<--`` out) and every NATS message (``<==`` request or publish out, ``==>``
reply in, ``=>>`` event in, ``S=>``/``U=>`` subscribe/unsubscribe), as
Resgate's trace does. Trace records are debug events marked
``resgate_trace=True``, emitted only when trace is on; other debug records
only when debug is on. The console script and twistd print the same
records, one line each.
"""

from __future__ import annotations

import json
import re
import signal

import pytest
import pytest_twisted
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from tests.rig.aio import sleep
from tests.rig.process import GatewayProcess, free_port
from tests.rig.resources import CUSTOM_EVENT, connect_client, expect_custom_event, subscribe_to
from tests.rig.service import FakeService

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
