"""resgate.natsbus against a real nats-server: requests, timeouts, subscriptions, failures."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher

from resgate import errors
from resgate.natsbus import (
    BUFFER_FULL,
    MAX_PENDING_BYTES,
    NOT_CONNECTED,
    NatsBus,
    MQConnectError,
    check_nats_hook,
)
from tests.rig.natsbus import confirm_subscriptions
from tests.rig.aio import WAIT_TIMEOUT, as_deferred, eventually, failure_of, within
from tests.rig.natsbus import connected_client, serve, service
from tests.rig.logs import ErrorLog
from tests.rig.nats import NatsServer

DEFAULT_MAX_PAYLOAD = 1024 * 1024  # nats-server's default max_payload


@pytest_twisted.async_yield_fixture
async def clients():
    """Connect MessageClients with ``await clients(url, **options)``; all are closed afterwards."""
    made = []

    async def make(url, **options):
        client = await connected_client(url, **options)
        made.append(client)
        return client

    yield make
    for client in made:
        await within(client.close())


@pytest_twisted.async_yield_fixture
async def svc(nats_server):
    """A plain nats-py connection playing the service."""
    nc = await service(nats_server.url)
    yield nc
    await within(as_deferred(nc.close()))


async def silent(msg):
    """A service that takes requests and never answers."""


def free_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def assert_usable(client):
    """The connection still works: a request to nobody gets NOT_FOUND from the server."""
    assert client.is_connected
    assert await failure_of(client.request("mq.nobody.check", b"{}")) == errors.NOT_FOUND


@pytest_twisted.ensureDeferred
async def test_request_gets_the_reply(nats_server, clients, svc):
    async def echo(msg):
        await msg.respond(b'{"echo":' + msg.data + b"}")

    await serve(svc, "mq.echo", echo)
    client = await clients(nats_server.url)
    assert await within(client.request("mq.echo", b'"hi"')) == b'{"echo":"hi"}'
    assert client.dispatched == 1


@pytest_twisted.ensureDeferred
async def test_request_without_reply_times_out(nats_server, clients, svc):
    await serve(svc, "mq.silent", silent)
    client = await clients(nats_server.url, request_timeout=0.2)
    started = reactor.seconds()
    assert await failure_of(client.request("mq.silent", b"{}")) == errors.TIMEOUT
    assert reactor.seconds() - started >= 0.19
    await assert_usable(client)


@pytest_twisted.ensureDeferred
async def test_each_request_times_out_at_its_own_deadline(nats_server, clients, svc):
    await serve(svc, "mq.silent.clock", silent)
    clock = Clock()
    client = await clients(nats_server.url, reactor=clock, request_timeout=3.0)
    first = client.request("mq.silent.clock", b"{}")
    clock.advance(1.0)
    second = client.request("mq.silent.clock", b"{}")
    clock.advance(1.9)
    assert not first.called and not second.called
    clock.advance(0.2)
    assert await failure_of(first) == errors.TIMEOUT
    assert not second.called
    clock.advance(1.0)
    assert await failure_of(second) == errors.TIMEOUT
    assert clock.getDelayedCalls() == []


@pytest_twisted.ensureDeferred
async def test_pre_response_extends_the_timeout(nats_server, clients, svc):
    async def slow(msg):
        await msg.respond(b'timeout:"1000"')
        await asyncio.sleep(0.5)
        await msg.respond(b'{"result":"late"}')

    await serve(svc, "mq.slow", slow)
    client = await clients(nats_server.url, request_timeout=0.2)
    assert await within(client.request("mq.slow", b"{}")) == b'{"result":"late"}'


@pytest_twisted.ensureDeferred
async def test_pre_response_without_reply_times_out_after_the_extension(nats_server, clients, svc):
    async def stalls(msg):
        await msg.respond(b'timeout:"1000"')

    await serve(svc, "mq.stalls", stalls)
    client = await clients(nats_server.url, request_timeout=0.2)
    started = reactor.seconds()
    assert await failure_of(client.request("mq.stalls", b"{}")) == errors.TIMEOUT
    assert reactor.seconds() - started >= 0.95


async def meta_then_marker(nats_server, clients, svc, subject, *metas):
    """A request on a fake clock whose service sent the pre-responses ``metas``.

    Returns (clock, request Deferred). The service publishes a marker event
    after the pre-responses; once the client has the marker, it has handled
    the pre-responses too.
    """
    async def handler(msg):
        for meta in metas:
            await msg.respond(meta)
        await svc.publish(subject + ".marker", b"{}")

    await serve(svc, subject, handler)
    clock = Clock()
    client = await clients(nats_server.url, reactor=clock, request_timeout=3.0)
    markers = []
    client.subscribe(subject + ".marker", lambda subject, payload: markers.append(payload))
    d = client.request(subject, b"{}")
    await eventually(lambda: markers)
    return clock, d


@pytest_twisted.ensureDeferred
async def test_pre_response_timeout_counts_from_its_arrival(nats_server, clients, svc):
    clock, d = await meta_then_marker(nats_server, clients, svc, "mq.meta.long", b'timeout:"10000"')
    clock.advance(9.9)
    assert not d.called
    clock.advance(0.2)
    assert await failure_of(d) == errors.TIMEOUT
    assert clock.getDelayedCalls() == []


@pytest_twisted.ensureDeferred
async def test_later_pre_response_replaces_the_timeout(nats_server, clients, svc):
    metas = (b'timeout:"10000"', b'timeout:"2000"')
    clock, d = await meta_then_marker(nats_server, clients, svc, "mq.meta.twice", *metas)
    clock.advance(1.9)
    assert not d.called
    clock.advance(0.2)
    assert await failure_of(d) == errors.TIMEOUT


@pytest.mark.parametrize("meta", [b'timeout:"soon"', b"nonsense", b'timeout:10000', b'other:"10000"'])
@pytest_twisted.ensureDeferred
async def test_unparsable_pre_response_is_ignored(nats_server, clients, svc, meta):
    subject = f"mq.meta.bad{abs(hash(meta))}"
    clock, d = await meta_then_marker(nats_server, clients, svc, subject, meta)
    clock.advance(3.01)
    assert await failure_of(d) == errors.TIMEOUT


@pytest_twisted.ensureDeferred
async def test_no_responders_is_not_found_at_once(nats_server, clients):
    client = await clients(nats_server.url, request_timeout=10.0)
    started = reactor.seconds()
    assert await failure_of(client.request("mq.nobody.here", b"{}")) == errors.NOT_FOUND
    assert reactor.seconds() - started < 2.0


@pytest_twisted.ensureDeferred
async def test_cancelled_request_is_forgotten(nats_server, clients, svc):
    await serve(svc, "mq.silent.cancel", silent)
    clock = Clock()
    client = await clients(nats_server.url, reactor=clock)
    d = client.request("mq.silent.cancel", b"{}")
    d.cancel()
    assert isinstance(await failure_of(d), CancelledError)
    # The deadline timer fires with nothing left to time out, and stops.
    clock.advance(client.request_timeout)
    assert clock.getDelayedCalls() == []
    await assert_usable(client)


@pytest_twisted.ensureDeferred
async def test_too_long_subject_is_refused_and_the_client_carries_on(nats_server, clients):
    client = await clients(nats_server.url)
    long_subject = "mq." + "x" * 5000
    assert await failure_of(client.request(long_subject, b"{}")) == errors.SUBJECT_TOO_LONG
    with pytest.raises(errors.ResError) as raised:
        client.subscribe(long_subject + ".*", lambda subject, payload: None)
    assert raised.value == errors.SUBJECT_TOO_LONG
    with pytest.raises(errors.ResError) as raised:
        client.publish(long_subject, b"{}")
    assert raised.value == errors.SUBJECT_TOO_LONG
    await assert_usable(client)


def _send(client, subject: str, payload: bytes, headers=None):
    """``send_request`` as a Deferred of (reply, error)."""
    from twisted.internet.defer import Deferred

    d: Deferred = Deferred()
    client.send_request(subject, payload, lambda reply, error: d.callback((reply, error)), headers)
    return within(d)


@pytest_twisted.ensureDeferred
async def test_request_headers_reach_the_service_and_a_request_without_has_none(nats_server, clients, svc):
    async def headers_of(msg):
        # In a list: a reply starting with a letter ("null") would be a pre-response.
        await msg.respond(json.dumps([msg.headers]).encode())

    await serve(svc, "mq.headers", headers_of)
    client = await clients(nats_server.url)
    trace = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tracestate": "a=1"}
    assert await _send(client, "mq.headers", b"{}", trace) == (json.dumps([trace]).encode(), None)
    assert await _send(client, "mq.headers", b"{}") == (b"[null]", None)


@pytest.mark.parametrize("headers", [
    {"traceparent": "x\r\nInjected: yes"}, {"trace\nparent": "x"}, {"trace:parent": "x"}, {"": "x"},
    {"traceparent": "\u00e9"},
], ids=["line break in a value", "line break in a key", "colon in a key", "empty key", "non-ASCII value"])
@pytest_twisted.ensureDeferred
async def test_a_header_that_would_break_its_line_is_refused_and_nothing_sent(nats_server, clients, headers):
    client = await clients(nats_server.url)
    reply, error = await _send(client, "mq.nobody.headers", b"{}", headers)
    assert reply is None and error.code == errors.CODE_INTERNAL_ERROR and "header" in error.message
    await assert_usable(client)


@pytest_twisted.ensureDeferred
async def test_headers_count_towards_max_payload(nats_server, clients):
    client = await clients(nats_server.url)
    payload = b"x" * (DEFAULT_MAX_PAYLOAD - 10)
    reply, error = await _send(client, "mq.nobody.big", payload, {"traceparent": "y" * 20})
    assert reply is None and "max_payload" in error.message
    await assert_usable(client)


@pytest_twisted.ensureDeferred
async def test_subscription_gets_events_until_unsubscribed(nats_server, clients, svc):
    client = await clients(nats_server.url)
    events, markers = [], []
    subscription = client.subscribe("mq.sub.*", lambda subject, payload: events.append((subject, payload)))
    client.subscribe("mq.unsub.marker", lambda subject, payload: markers.append(payload))
    await assert_usable(client)  # both SUBs are in place at the server
    await as_deferred(svc.publish("mq.sub.a", b"1"))
    await eventually(lambda: events)

    subscription.unsubscribe()
    subscription.unsubscribe()
    await assert_usable(client)  # the UNSUB went ahead of this request
    await as_deferred(svc.publish("mq.sub.a", b"2"))
    await as_deferred(svc.publish("mq.unsub.marker", b"done"))
    await eventually(lambda: markers)
    assert events == [("mq.sub.a", b"1")]


@pytest_twisted.ensureDeferred
async def test_publish_reaches_subscribers(nats_server, clients, svc):
    subscription = await within(as_deferred(svc.subscribe("mq.pub")))
    await confirm_subscriptions(svc)
    client = await clients(nats_server.url)
    client.publish("mq.pub", b'{"n":1}')
    client.publish("mq.pub", b'{"n":2}', reply="mq.pub.answer")
    first = await within(as_deferred(subscription.next_msg(timeout=WAIT_TIMEOUT)))
    second = await within(as_deferred(subscription.next_msg(timeout=WAIT_TIMEOUT)))
    assert (first.data, first.reply) == (b'{"n":1}', "")
    assert (second.data, second.reply) == (b'{"n":2}', "mq.pub.answer")


@pytest_twisted.ensureDeferred
async def test_connect_failure_is_one_clear_line():
    port = free_port()
    error = await failure_of(NatsBus(f"nats://127.0.0.1:{port}").connect())
    assert isinstance(error, MQConnectError)
    assert str(error) == f"cannot connect to NATS at nats://127.0.0.1:{port}: connection refused"


@pytest_twisted.ensureDeferred
async def test_user_and_password_in_url():
    server = NatsServer(extra_args=("--user", "alice", "--pass", "s3cret")).start()
    try:
        client = NatsBus(f"nats://alice:s3cret@127.0.0.1:{server.port}")
        await within(client.connect())
        await assert_usable(client)
        await within(client.close())

        error = await failure_of(NatsBus(f"nats://alice:wrong@127.0.0.1:{server.port}").connect())
        assert isinstance(error, MQConnectError)
        assert "authorization" in str(error).lower()
        assert "wrong" not in str(error)
        assert "\n" not in str(error)
    finally:
        server.cleanup()


@pytest_twisted.ensureDeferred
async def test_token_in_url():
    server = NatsServer(extra_args=("--auth", "t0ken")).start()
    try:
        client = NatsBus(f"nats://t0ken@127.0.0.1:{server.port}")
        await within(client.connect())
        await assert_usable(client)
        await within(client.close())
    finally:
        server.cleanup()


@pytest_twisted.ensureDeferred
async def test_server_list_skips_dead_servers(nats_server, clients):
    dead = [f"nats://127.0.0.1:{free_port()}" for _ in range(3)]
    client = await clients(",".join([*dead, nats_server.url]))
    await assert_usable(client)


@pytest_twisted.ensureDeferred
async def test_lost_connection_is_reported_and_fails_pending_requests(private_nats_server):
    nc = await service(private_nats_server.url)
    await serve(nc, "mq.lost", silent)
    client = NatsBus(private_nats_server.url, request_timeout=10.0)
    await within(client.connect())
    lost = []
    client.on_lost = lost.append
    pending = client.request("mq.lost", b"{}")
    await assert_usable(client)

    private_nats_server.kill()
    error = await failure_of(pending)
    assert isinstance(error, errors.ResError) and error.code == errors.CODE_INTERNAL_ERROR
    assert "lost NATS connection" in error.message
    await eventually(lambda: lost)
    assert len(lost) == 1 and lost[0].startswith("lost NATS connection: ") and "\n" not in lost[0]
    assert not client.is_connected
    assert await failure_of(client.request("mq.lost", b"{}")) == NOT_CONNECTED
    await within(client.close())
    await within(as_deferred(nc.close()))


@pytest_twisted.ensureDeferred
async def test_close_fails_pending_requests(nats_server, svc):
    await serve(svc, "mq.silent.close", silent)
    client = NatsBus(nats_server.url)
    await within(client.connect())
    lost = []
    client.on_lost = lost.append
    pending = client.request("mq.silent.close", b"{}")
    closing = client.close()
    assert await failure_of(pending) == errors.DISPOSING
    await within(closing)
    await within(client.close())
    assert lost == []
    assert not client.is_connected
    assert await failure_of(client.request("mq.silent.close", b"{}")) == NOT_CONNECTED
    with pytest.raises(errors.ResError):
        client.subscribe("mq.after.close", lambda subject, payload: None)
    with pytest.raises(errors.ResError):
        client.publish("mq.after.close", b"{}")


@pytest_twisted.ensureDeferred
async def test_client_can_connect_again_after_close(nats_server):
    client = NatsBus(nats_server.url)
    await within(client.connect())
    await within(client.close())
    await within(client.connect())
    await assert_usable(client)
    await within(client.close())


@pytest.mark.parametrize("subject", ["", "has space", "tab\there", "crlf\r\nPUB x 0", "a..b", ".a", "a."])
@pytest_twisted.ensureDeferred
async def test_malformed_subject_gets_a_clear_error(nats_server, clients, subject):
    client = await clients(nats_server.url)
    error = await failure_of(client.request(subject, b"{}"))
    assert isinstance(error, errors.ResError) and "invalid NATS subject" in error.message
    with pytest.raises(errors.ResError, match="invalid NATS subject"):
        client.publish(subject, b"{}")
    with pytest.raises(errors.ResError, match="invalid NATS subject"):
        client.subscribe(subject, lambda s, p: None)
    await assert_usable(client)


@pytest.mark.parametrize("pattern", ["a.>.b", "a.b*", "a.>x"])
@pytest_twisted.ensureDeferred
async def test_malformed_wildcard_gets_a_clear_error(nats_server, clients, pattern):
    client = await clients(nats_server.url)
    with pytest.raises(errors.ResError, match="invalid NATS subject"):
        client.subscribe(pattern, lambda subject, payload: None)
    await assert_usable(client)


@pytest_twisted.ensureDeferred
async def test_payload_over_max_payload_is_refused(nats_server, clients):
    client = await clients(nats_server.url)
    huge = b"x" * (DEFAULT_MAX_PAYLOAD + 1)
    error = await failure_of(client.request("mq.huge", huge))
    assert isinstance(error, errors.ResError) and "max_payload" in error.message
    with pytest.raises(errors.ResError, match="max_payload"):
        client.publish("mq.huge", huge)
    await assert_usable(client)


@pytest_twisted.ensureDeferred
async def test_outgoing_buffer_is_bounded(nats_server, clients):
    client = await clients(nats_server.url)
    payload = b"x" * (DEFAULT_MAX_PAYLOAD - 1024)
    published = 0
    with pytest.raises(errors.ResError) as raised:
        # Nothing is written to the socket until the reactor runs again.
        while published * len(payload) <= 2 * MAX_PENDING_BYTES:
            client.publish("mq.burst", payload)
            published += 1
    assert raised.value == BUFFER_FULL
    assert published * len(payload) <= MAX_PENDING_BYTES
    assert await failure_of(client.request("mq.burst", payload)) == BUFFER_FULL
    await assert_usable(client)


@pytest_twisted.ensureDeferred
async def test_failing_handler_does_not_stop_delivery(nats_server, clients):
    client = await clients(nats_server.url)
    received = []

    def handler(subject, payload):
        received.append(payload)
        if payload == b"1":
            raise RuntimeError("handler bug")

    client.subscribe("mq.failing", handler)
    client.publish("mq.failing", b"1")
    client.publish("mq.failing", b"2")
    await eventually(lambda: len(received) == 2)
    assert received == [b"1", b"2"]
    await assert_usable(client)


@pytest_twisted.ensureDeferred
async def test_trace_logs_traffic_in_arrow_style(nats_server, clients, svc):
    async def echo(msg):
        await msg.respond(b'{"ok":true}')

    await serve(svc, "mq.trace.req", echo)
    traced = []

    def observer(event):
        if event.get("log_namespace") == "resgate.mq" and event.get("resgate_trace"):
            traced.append(formatEvent(event))

    globalLogPublisher.addObserver(observer)
    try:
        quiet = await clients(nats_server.url)
        await within(quiet.request("mq.trace.req", b"{}"))
        assert traced == []

        client = await clients(nats_server.url, trace=True)
        events = []
        client.subscribe("mq.trace.ev", lambda subject, payload: events.append(payload))
        await within(client.request("mq.trace.req", b'{"q":1}'))
        client.publish("mq.trace.ev", b'{"e":1}')
        await eventually(lambda: events)
    finally:
        globalLogPublisher.removeObserver(observer)
    assert traced[0] == "S=> mq.trace.ev"
    assert traced[1].startswith("<== (") and traced[1].endswith(') mq.trace.req: {"q":1}')
    assert traced[2].startswith("==> (") and traced[2].endswith('): {"ok":true}')
    assert traced[3:] == ['<== mq.trace.ev: {"e":1}', '=>> mq.trace.ev: {"e":1}']


def test_missing_nats_hook_fails_loudly():
    class Renamed:
        async def _dispatch_msg(self, sid, subject, reply, data, headers):
            pass

    class ChangedParameters:
        async def _process_msg(self, sid, subject, reply, data):
            pass

    for client_class in (Renamed, ChangedParameters):
        with pytest.raises(ImportError, match=r"nats-py \d+\.\d+\.\d+ does not have"):
            check_nats_hook(client_class)


@pytest_twisted.ensureDeferred
async def test_tls_options_need_cert_and_key_together():
    error = await failure_of(NatsBus("nats://127.0.0.1:1", cert="client.pem").connect())
    assert isinstance(error, MQConnectError) and "key is missing" in str(error)
    error = await failure_of(NatsBus("nats://127.0.0.1:1", root_cas=["/nonexistent/ca.pem"]).connect())
    assert isinstance(error, MQConnectError) and str(error).startswith("cannot load NATS TLS files: ")


@pytest_twisted.ensureDeferred
async def test_a_failing_reply_handler_is_logged_and_dispatch_goes_on(nats_server, clients, svc):
    async def echo(msg):
        await msg.respond(msg.data)

    await serve(svc, "mq.echo.raises", echo)
    client = await clients(nats_server.url)
    errors_logged = ErrorLog()
    globalLogPublisher.addObserver(errors_logged)
    try:
        def respond(reply, error):
            raise RuntimeError("handler bug")

        client.send_request("mq.echo.raises", b'"first"', respond)
        # The next reply still gets through, after the first one's error was logged.
        assert await within(client.request("mq.echo.raises", b'"second"')) == b'"second"'
        assert len(errors_logged.messages) == 1
        assert "Handling the reply to a NATS request" in errors_logged.messages[0]
    finally:
        globalLogPublisher.removeObserver(errors_logged)


@pytest_twisted.ensureDeferred
async def test_send_request_reports_errors_found_before_sending_at_once(nats_server, clients):
    client = await clients(nats_server.url)
    outcomes = []
    assert client.send_request("mq.bad subject", b"{}", lambda *outcome: outcomes.append(outcome)) == 0
    assert len(outcomes) == 1
    reply, error = outcomes[0]
    assert reply is None and isinstance(error, errors.ResError)


@pytest.fixture
def hook_never_called(monkeypatch):
    """nats-py as a release would be whose parser no longer calls ``_process_msg``:
    the gateway's messages go to nats-py's own dispatch, which knows none of them."""
    import nats.aio.client

    from resgate import natsbus

    async def parser_skips_the_hook(self, sid, subject, reply, data, headers):
        await nats.aio.client.Client._process_msg(self, sid, subject, reply, data, headers)

    monkeypatch.setattr(natsbus._OrderedClient, "_process_msg", parser_skips_the_hook)
    monkeypatch.setattr(natsbus, "SELF_TEST_TIMEOUT", 0.5)


@pytest_twisted.ensureDeferred
async def test_connect_self_test_passes_and_counts_no_dispatch(nats_server, clients):
    client = await clients(nats_server.url)
    assert client.is_connected
    assert client.dispatched == 0


@pytest_twisted.ensureDeferred
async def test_connect_fails_in_one_line_when_the_dispatch_hook_is_not_called(nats_server, hook_never_called):
    client = NatsBus(nats_server.url)
    error = await failure_of(client.connect())
    assert isinstance(error, MQConnectError)
    message = str(error)
    assert "\n" not in message and "dispatch hook" in message and "setup.cfg" in message
    assert not client.is_connected
    assert await failure_of(client.request("mq.any", b"{}")) == NOT_CONNECTED
    await within(client.close())


@pytest_twisted.ensureDeferred
async def test_send_now_writes_what_is_queued_before_the_flusher_runs(nats_server, clients, svc):
    subscription = await within(as_deferred(svc.subscribe("mq.now")))
    await confirm_subscriptions(svc)
    client = await clients(nats_server.url)
    client.publish("mq.now", b"1")
    client.publish("mq.now", b"2")
    nc = client._nc
    assert len(nc._pending) == 2  # nothing has yielded to the loop: nats-py's flusher has not run
    client.send_now()
    assert (nc._pending, nc._pending_data_size) == ([], 0)
    first = await within(as_deferred(subscription.next_msg(timeout=WAIT_TIMEOUT)))
    second = await within(as_deferred(subscription.next_msg(timeout=WAIT_TIMEOUT)))
    assert (first.data, second.data) == (b"1", b"2")


@pytest_twisted.ensureDeferred
async def test_send_now_leaves_a_backed_up_socket_to_the_flusher(nats_server, clients, svc, monkeypatch):
    """While the socket's buffer holds data the flusher, which waits for it to drain, keeps the writing."""
    subscription = await within(as_deferred(svc.subscribe("mq.now")))
    await confirm_subscriptions(svc)
    client = await clients(nats_server.url)
    writer = client._nc._transport._io_writer

    class BackedUp:
        def get_write_buffer_size(self) -> int:
            return 1

    class Writer:
        transport = BackedUp()

        def writelines(self, data) -> None:
            raise AssertionError("send_now wrote to a backed-up socket")

    monkeypatch.setattr(client._nc._transport, "_io_writer", Writer())
    client.publish("mq.now", b"1")
    client.send_now()
    assert len(client._nc._pending) == 1
    monkeypatch.setattr(client._nc._transport, "_io_writer", writer)
    message = await within(as_deferred(subscription.next_msg(timeout=WAIT_TIMEOUT)))
    assert message.data == b"1"


@pytest_twisted.ensureDeferred
async def test_send_now_without_a_connection_does_nothing(nats_server, clients):
    client = await clients(nats_server.url)
    await within(client.close())
    client.send_now()
    never = NatsBus("nats://127.0.0.1:1")
    never.send_now()


@pytest_twisted.ensureDeferred
async def test_has_unread_while_the_rest_of_a_read_waits_in_the_parser(nats_server, clients):
    """What nats-py's read loop does with one read of three messages: each handled while the rest wait."""
    client = await clients(nats_server.url)
    seen: list[tuple[bytes, bool]] = []
    subscription = client.subscribe("mq.unread", lambda _subject, data: seen.append((data, client.has_unread())))
    read = b"".join(b"MSG mq.unread %d 1\r\n%s\r\n" % (subscription._sid, data) for data in (b"a", b"b", b"c"))
    await within(as_deferred(client._nc._ps.parse(read)))
    assert seen == [(b"a", True), (b"b", True), (b"c", False)]
    assert not client.has_unread()
    await within(client.close())
    assert not client.has_unread()



@pytest_twisted.ensureDeferred
async def test_read_handled_runs_once_the_last_message_of_a_read_was_handled(nats_server, clients):
    """What nats-py's read loop does with one read of three messages, then with the same in two reads."""
    seen: list[bytes] = []
    client = await clients(nats_server.url, read_handled=lambda: seen.append(b"handled"))
    subscription = client.subscribe("mq.handled", lambda _subject, data: seen.append(data))
    read = b"".join(b"MSG mq.handled %d 1\r\n%s\r\n" % (subscription._sid, data) for data in (b"a", b"b", b"c"))
    seen.clear()  # the bus's own reads so far (its self-test at connect)
    await within(as_deferred(client._nc._ps.parse(read)))
    assert seen == [b"a", b"b", b"c", b"handled"]
    seen.clear()
    await within(as_deferred(client._nc._ps.parse(read[:-4])))  # c's payload still to come
    assert seen == [b"a", b"b"]
    await within(as_deferred(client._nc._ps.parse(read[-4:])))
    assert seen == [b"a", b"b", b"c", b"handled"]


@pytest_twisted.ensureDeferred
async def test_a_failing_read_handled_is_logged_and_the_messages_go_on(nats_server, clients):
    def fail() -> None:
        raise RuntimeError("read_handled broke")

    seen: list[bytes] = []
    client = await clients(nats_server.url, read_handled=fail)
    subscription = client.subscribe("mq.handled", lambda _subject, data: seen.append(data))
    errors_logged = ErrorLog()
    globalLogPublisher.addObserver(errors_logged)
    try:
        for data in (b"a", b"b"):
            await within(as_deferred(client._nc._ps.parse(b"MSG mq.handled %d 1\r\n%s\r\n" % (subscription._sid, data))))
        assert seen == [b"a", b"b"]
        assert len(errors_logged.messages) == 2
        assert all("Sending what a NATS read's messages wrote" in m for m in errors_logged.messages)
    finally:
        globalLogPublisher.removeObserver(errors_logged)
