"""bench/service.py, the benchmark's fake service on NATS's text protocol.

Against a real nats-server it must answer what the bench's lines ask (access,
gets of every resource, calls, a burst of events); fed a stream in any
pieces it must answer the same; what it does not understand ends it with a
clear reason instead of a wrong answer.
"""

from __future__ import annotations

import asyncio
import json
import select
import socket
import subprocess
import sys

import pytest

from bench.service import MAX_LINE, ProtocolError, Service

def message(subject: bytes, sid: bytes, reply: bytes | None, payload: bytes) -> bytes:
    """A MSG as nats-server delivers it."""
    head = b" ".join([b"MSG", subject, sid, *([reply] if reply else []), b"%d" % len(payload)])
    return head + b"\r\n" + payload + b"\r\n"


#: A stream as nats-server sends it: its INFO, a PING, and requests of every kind.
REQUESTS = b"".join([
    b'INFO {"server_id":"x","max_payload":1048576}\r\n',
    b"PING\r\n",
    message(b"access.bench.model", b"1", b"_INBOX.a", b"{}"),
    message(b"get.bench.model", b"2", b"_INBOX.b", b""),
    message(b"get.bench.item.t.7", b"2", b"_INBOX.c", b""),
    message(b"get.bench.item.t.seven", b"2", b"_INBOX.d", b""),
    message(b"call.bench.model.ping", b"3", b"_INBOX.e", b'{"params":{"n":[1,"\\r\\n"]}}'),
    message(b"call.bench.model.burst", b"3", b"_INBOX.f", b'{"params":{"count":2}}'),
    message(b"call.bench.model.burst", b"3", b"_INBOX.g", b"{nope"),
    message(b"call.bench.other.ping", b"3", b"_INBOX.h", b""),
    message(b"get.bench.model", b"2", None, b""),  # no reply subject: nothing to answer
])


class Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        self.closed = True


def service() -> tuple[Service, Transport, asyncio.Future, asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    lost = loop.create_future()
    protocol = Service(loop.create_future(), lost)
    transport = Transport()
    protocol.connection_made(transport)
    transport.written.clear()  # CONNECT and the subscribes
    return protocol, transport, lost, loop


def answers(written: bytes) -> list[tuple[bytes, bytes]]:
    """(subject, payload) of each PUB; PONGs as (b"PONG", b"")."""
    found = []
    while written:
        line, _, written = written.partition(b"\r\n")
        if line == b"PONG":
            found.append((b"PONG", b""))
            continue
        _, subject, size = line.split(b" ")
        found.append((subject, written[:int(size)]))
        written = written[int(size) + 2:]
    return found


def test_every_request_is_answered_in_one_write_per_read():
    protocol, transport, lost, loop = service()
    protocol.data_received(REQUESTS)
    assert len(transport.written) == 1
    got = answers(transport.written[0])
    replies = {subject: payload for subject, payload in got if subject.startswith(b"_INBOX")}
    assert got[0] == (b"PONG", b"")
    assert json.loads(replies[b"_INBOX.a"]) == {"result": {"get": True, "call": "*"}}
    assert json.loads(replies[b"_INBOX.b"]) == {"result": {"model": {"seq": 0, "t": 0.0}}}
    assert json.loads(replies[b"_INBOX.c"]) == {"result": {"model": {"id": 7, "name": "Item 7", "done": False}}}
    assert json.loads(replies[b"_INBOX.d"])["error"]["code"] == "system.notFound"
    assert json.loads(replies[b"_INBOX.e"]) == {"result": {"n": [1, "\r\n"]}}
    assert json.loads(replies[b"_INBOX.f"]) == {"result": {"count": 2}}
    assert json.loads(replies[b"_INBOX.g"])["error"]["code"] == "system.invalidParams"
    assert json.loads(replies[b"_INBOX.h"])["error"]["code"] == "system.notFound"
    events = [json.loads(payload) for subject, payload in got if subject == b"event.bench.model.change"]
    assert [event["values"]["seq"] for event in events] == [1, 2]
    assert len(got) == 1 + 8 + 2
    assert not lost.done()
    loop.close()


def without_event_payloads(found: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``answers`` with each event's payload left out: its time differs from run to run."""
    return [(subject, b"" if subject == b"event.bench.model.change" else payload) for subject, payload in found]


def test_a_stream_in_pieces_is_answered_as_the_whole():
    whole, whole_transport, _, loop = service()
    whole.data_received(REQUESTS)
    for size in (1, 2, 7, 50):
        protocol, transport, lost, piece_loop = service()
        for start in range(0, len(REQUESTS), size):
            protocol.data_received(REQUESTS[start:start + size])
        assert (without_event_payloads(answers(b"".join(transport.written)))
                == without_event_payloads(answers(whole_transport.written[0])))
        assert not lost.done()
        piece_loop.close()
    loop.close()


def test_a_burst_stamps_every_event_later_than_the_last():
    # The gateway leaves a value that did not change out of a change event:
    # two events with one t would give a client an event without its time.
    protocol, transport, _, loop = service()
    protocol.data_received(message(b"call.bench.model.burst", b"3", b"_INBOX.f", b'{"params":{"count":2000}}'))
    events = [json.loads(payload)["values"] for subject, payload in answers(transport.written[0])
              if subject == b"event.bench.model.change"]
    assert len(events) == 2000
    assert all(later["t"] > earlier["t"] for earlier, later in zip(events, events[1:]))
    loop.close()


def test_a_collection_of_a_thousand_references():
    protocol, transport, _, loop = service()
    protocol.data_received(b"MSG get.bench.refs.r1-0 2 _INBOX.x 0\r\n\r\n")
    [(subject, payload)] = answers(transport.written[0])
    collection = json.loads(payload)["result"]["collection"]
    assert collection[0] == {"rid": "bench.item.r1-0.0"} and collection[-1] == {"rid": "bench.item.r1-0.999"}
    assert len(collection) == 1000
    loop.close()


@pytest.mark.parametrize("stream, reason", [
    (b"-ERR 'Authorization Violation'\r\n", "the server refused"),
    (b"MSG get.bench.model 2 _INBOX.a many\r\n", "a malformed MSG line"),
    (b"MSG get.bench.model\r\n", "a malformed MSG line"),
    (b"HMSG get.bench.model 2 _INBOX.a 12 12\r\nNATS/1.0\r\n\r\n\r\n", "an unknown command"),
    (b"MSG get." + b"x" * MAX_LINE, "a line longer than"),
])
def test_what_it_does_not_understand_ends_it_with_the_reason(stream, reason):
    protocol, transport, lost, loop = service()
    protocol.data_received(stream)
    assert isinstance(lost.result(), ProtocolError) and reason in str(lost.result())
    assert transport.closed and not transport.written
    loop.close()


# -- against a real nats-server


class Requester:
    """A blocking NATS client: one inbox, a request at a time, bounded waits."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("nats://").rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=5)
        self.unread = b""
        self.read_line()  # INFO
        self.sock.sendall(b'CONNECT {"verbose":false}\r\nSUB _INBOX.test.> 1\r\nSUB event.bench.> 2\r\nPING\r\n')
        assert self.read_line() == b"PONG"

    def read_line(self) -> bytes:
        while b"\r\n" not in self.unread:
            self.unread += self.sock.recv(65536)
        line, _, self.unread = self.unread.partition(b"\r\n")
        return line

    def read_message(self) -> tuple[bytes, dict]:
        line = self.read_line()
        while line == b"PING":
            self.sock.sendall(b"PONG\r\n")
            line = self.read_line()
        fields = line.split(b" ")
        size = int(fields[-1])
        while len(self.unread) < size + 2:
            self.unread += self.sock.recv(65536)
        payload, self.unread = self.unread[:size], self.unread[size + 2:]
        return fields[1], json.loads(payload)

    def request(self, subject: str, payload: bytes, inbox: str) -> dict:
        self.sock.sendall(b"PUB %s _INBOX.test.%s %d\r\n%s\r\n" % (subject.encode(), inbox.encode(), len(payload), payload))
        subject_got, message = self.read_message()
        assert subject_got == f"_INBOX.test.{inbox}".encode()
        return message


@pytest.fixture
def bench_service(nats_server):
    process = subprocess.Popen([sys.executable, "-m", "bench.service", "--nats", nats_server.url],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        readable, _, _ = select.select([process.stdout], [], [], 10)
        assert readable, "the service printed nothing in 10 s"
        line = process.stdout.readline()  # ready, or nothing when it exits
        assert line == b"ready\n", process.stderr.read()
        yield process
    finally:
        process.kill()
        process.wait(timeout=10)
        process.stdout.close()
        process.stderr.close()


def test_it_answers_the_bench_through_nats_server(nats_server, bench_service):
    client = Requester(nats_server.url)
    assert client.request("access.bench.model", b"{}", "a") == {"result": {"get": True, "call": "*"}}
    assert client.request("get.bench.item.x.3", b"{}", "b")["result"]["model"]["id"] == 3
    assert len(client.request("get.bench.refs.x", b"{}", "c")["result"]["collection"]) == 1000
    big = json.dumps({"params": {"blob": "y" * 300_000}}).encode()  # many reads on the service's side
    assert client.request("call.bench.model.ping", big, "d") == {"result": {"blob": "y" * 300_000}}
    assert client.request("call.bench.model.burst", b'{"params":{"count":3}}', "e") == {"result": {"count": 3}}
    events = [client.read_message() for _ in range(3)]
    assert [subject for subject, _ in events] == [b"event.bench.model.change"] * 3
    seqs = [message["values"]["seq"] for _, message in events]
    assert seqs == list(range(seqs[0], seqs[0] + 3))
    model = client.request("get.bench.model", b"{}", "f")["result"]["model"]
    assert model["seq"] == seqs[-1] and model["t"] == pytest.approx(events[-1][1]["values"]["t"], abs=0.001)
    assert client.request("call.bench.model.paced", b'{"params":{"count":2,"rate":50}}', "g")["result"]["count"] == 2
    assert [client.read_message()[1]["values"]["seq"] for _ in range(2)] == [seqs[-1] + 1, seqs[-1] + 2]
    client.sock.close()
    assert bench_service.poll() is None
