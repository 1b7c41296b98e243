"""The benchmark's fake RES service: one process speaking NATS's text protocol itself.

    python -m bench.service --nats nats://127.0.0.1:4222

Resources (TAG is any name part, so every run can ask for a cold one):

- ``bench.model``: a model ``{"seq": N, "t": MS}``; change events set both.
- ``bench.refs.TAG``: a collection of 1,000 references ``bench.item.TAG.<i>``.
- ``bench.item.TAG.<i>``: a small model.

Every access request is granted ``{"get": true, "call": "*"}``. Calls on
``bench.model``:

- ``ping``: replies with its params (the call round-trip scenario);
- ``burst`` ``{"count": N}``: replies, then publishes N change events at once;
- ``paced`` ``{"count": N, "rate": R}``: replies, then publishes N change
  events at R per second.

Each change event carries ``seq`` (1, 2, ... over the process's life) and
``t``, the wall-clock time in milliseconds just before it is published, so a
client on the same machine measures delivery latency. Prints ``ready`` once
subscribed.

Why not nats-py: answering through it cost about 31 us of the service's CPU
a request (a message object, a queue and a task switch each), so the lines
that ask the service most (a cold subscribe's 1,001 gets, the calls) measured
the service as much as the gateway in front of it. Here the requests of one
read are answered in one write, with no object per message.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from urllib.parse import urlsplit

import orjson
import uvloop

REFERENCES = 1000
ACCESS = b'{"result":{"get":true,"call":"*"}}'
NOT_FOUND = b'{"error":{"code":"system.notFound","message":"Not found"}}'
INVALID_PARAMS = b'{"error":{"code":"system.invalidParams","message":"Invalid parameters"}}'
MODEL = b"bench.model"
#: What the service subscribes to; a request is told apart by its subject's first token.
SUBSCRIPTIONS = (b"access.>", b"get.>", b"call.>")
CONNECT = (b'CONNECT {"verbose":false,"pedantic":false,"lang":"python","version":"bench",'
           b'"protocol":1,"headers":false,"no_responders":false}\r\n')
#: The longest protocol line taken without its end (a MSG line is a subject, a sid and a reply).
MAX_LINE = 4096


def publish(subject: bytes, payload: bytes) -> bytes:
    """A PUB command."""
    return b"PUB %s %d\r\n%s\r\n" % (subject, len(payload), payload)


class ProtocolError(Exception):
    """The server sent something this service does not understand, or refused it."""


class Service(asyncio.Protocol):
    """The fake service on one NATS connection."""

    def __init__(self, ready: asyncio.Future, lost: asyncio.Future) -> None:
        self.ready = ready
        self.lost = lost
        self.transport: asyncio.Transport | None = None
        self.unread = b""
        self.seq = 0
        self.t = 0.0
        self.paced: set[asyncio.Task] = set()

    def connection_made(self, transport) -> None:
        self.transport = transport
        subscribes = b"".join(b"SUB %s %d\r\n" % (subject, sid) for sid, subject in enumerate(SUBSCRIPTIONS, 1))
        transport.write(CONNECT + subscribes + b"PING\r\n")

    def connection_lost(self, exc) -> None:
        if not self.lost.done():
            self.lost.set_result(exc or ProtocolError("the server closed the connection"))

    def data_received(self, data: bytes) -> None:
        try:
            self.read(data)
        except ProtocolError as e:
            self.lost.set_result(e)
            self.transport.close()

    def read(self, data: bytes) -> None:
        """Handle every whole command read; answer them all in one write."""
        unread = self.unread + data if self.unread else data
        out: list[bytes] = []
        position = 0
        while True:
            end = unread.find(b"\r\n", position)
            if end < 0:
                if len(unread) - position > MAX_LINE:
                    raise ProtocolError(f"a line longer than {MAX_LINE} bytes: {unread[position:position + 80]!r}")
                break
            line = unread[position:end]
            if line[:4] == b"MSG ":
                fields = line.split(b" ")
                if len(fields) not in (4, 5) or not fields[-1].isdigit():
                    raise ProtocolError(f"a malformed MSG line: {line[:200]!r}")
                start = end + 2
                stop = start + int(fields[-1])
                if len(unread) < stop + 2:
                    break  # the payload has not all arrived
                reply = fields[3] if len(fields) == 5 else None
                if reply is not None:
                    self.answer(fields[1], reply, unread[start:stop], out)
                position = stop + 2
                continue
            if line == b"PING":
                out.append(b"PONG\r\n")
            elif line == b"PONG":
                if not self.ready.done():
                    self.ready.set_result(None)
            elif line[:4] == b"-ERR":
                raise ProtocolError(f"the server refused: {line.decode(errors='replace')}")
            elif not (line[:5] == b"INFO " or line == b"+OK" or line == b""):
                raise ProtocolError(f"an unknown command: {line[:200]!r}")
            position = end + 2
        self.unread = unread[position:]
        if out:
            self.transport.write(b"".join(out))

    def answer(self, subject: bytes, reply: bytes, payload: bytes, out: list[bytes]) -> None:
        kind, _, target = subject.partition(b".")
        if kind == b"access":
            out.append(publish(reply, ACCESS))
        elif kind == b"get":
            out.append(publish(reply, self.get(target)))
        elif kind == b"call":
            self.call(target, reply, payload, out)

    def get(self, rid: bytes) -> bytes:
        if rid == MODEL:
            return b'{"result":{"model":{"seq":%d,"t":%s}}}' % (self.seq, orjson.dumps(self.t))
        if rid.startswith(b"bench.refs."):
            item = b'{"rid":"bench.item.' + rid[len(b"bench.refs."):] + b'.%d"}'
            return b'{"result":{"collection":[' + b",".join(item % i for i in range(REFERENCES)) + b"]}}"
        if rid.startswith(b"bench.item."):
            index = rid.rpartition(b".")[2]
            if index.isdigit():
                return b'{"result":{"model":{"id":%d,"name":"Item %d","done":false}}}' % (int(index), int(index))
        return NOT_FOUND

    def call(self, target: bytes, reply: bytes, payload: bytes, out: list[bytes]) -> None:
        rid, _, method = target.rpartition(b".")
        if rid != MODEL or method not in (b"ping", b"burst", b"paced"):
            out.append(publish(reply, NOT_FOUND))
            return
        try:
            params = orjson.loads(payload).get("params") if payload else None
            count = int(params["count"]) if method != b"ping" else 0
            rate = float(params["rate"]) if method == b"paced" else 0.0
        except (ValueError, TypeError, KeyError, AttributeError):  # orjson's JSONDecodeError is a ValueError
            out.append(publish(reply, INVALID_PARAMS))
            return
        out.append(publish(reply, b'{"result":%s}' % orjson.dumps(params)))
        if method == b"burst":
            out.extend(self.change() for _ in range(count))
        elif method == b"paced":
            task = asyncio.ensure_future(self.publish_paced(count, rate))
            self.paced.add(task)
            task.add_done_callback(self.paced.discard)

    async def publish_paced(self, count: int, rate: float) -> None:
        start = time.monotonic()
        for i in range(count):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self.transport.write(self.change())

    def change(self) -> bytes:
        """The next change event's PUB, its time taken now.

        A burst makes events faster than the clock's microseconds move; a
        ``t`` equal to the last one would be left out of the event by the
        gateway (a change carries only what changed), so each is at least
        a microsecond later.
        """
        self.seq += 1
        self.t = max(round(time.time() * 1000, 3), round(self.t + 0.001, 3))
        return publish(b"event.bench.model.change", b'{"values":{"seq":%d,"t":%.3f}}' % (self.seq, self.t))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nats", required=True)
    args = parser.parse_args()
    url = urlsplit(args.nats)
    loop = asyncio.get_running_loop()
    ready, lost = loop.create_future(), loop.create_future()
    await loop.create_connection(lambda: Service(ready, lost), url.hostname or "127.0.0.1", url.port or 4222)
    await asyncio.wait([ready, lost], return_when=asyncio.FIRST_COMPLETED)
    if ready.done():
        print("ready", flush=True)
    reason = await lost
    sys.exit(f"bench service: {reason}")


if __name__ == "__main__":
    try:
        uvloop.run(main())
    except KeyboardInterrupt:
        pass
