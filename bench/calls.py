"""The gateway's function calls per warm subscribe of 1,000 references and per cached HTTP GET, counted in process.

    .venv/bin/python -m bench.calls [--rounds N]

Timings on a shared 2-core machine swing by a third from run to run; a count
of calls does not, so a change on the subscribe path can be judged before
the paired bench can tell it from noise. The gateway's connection and cache
run in this process over the in-memory bus (tests/rig/memorybus.py), on a
fake clock, with a service that answers access and get requests at once.
One connection subscribes ``bench.refs.a``, a collection of 1,000 references
to models, and keeps it (the cold subscribe, not counted); then each round a
new connection subscribes it again (the warm subscribe of the refs_1000
line) and is disposed. cProfile counts the calls of functions in resgate's
own modules during the warm rounds: per subscribe and per dispose. The bus,
the service and the profiler are left out, as are the gateway's calls into
Twisted and the standard library.

The cached GET of the http_get line goes through the gateway's HTTP site
(the gateway's channel and its plain GET, site.PlainGet, as service.py
builds them) on one keep-alive connection over an in-memory transport:
every Python call from the request's bytes to the response's is counted,
Twisted's included, and the gateway's own calls among them; the bus and
the service are left out as above.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
from typing import Any

import orjson
from twisted.internet import base, task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from resgate import codec
from resgate.cache.cache import ResourceCache
from resgate.config import Config
from resgate.connection import Connection
from resgate.context import GatewayContext
from resgate.site import GatewayRoot, GatewaySite, PlainGet
from resgate.web import ApiResource, HttpBounds
from resgate.workqueue import WorkQueue
from tests.rig.memorybus import MemoryBroker

REFERENCES = 1000
ROOT = "bench.refs.a"
MODEL = "bench.item.a.0"
GET_REQUEST = b"GET /api/bench/item/a/0 HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: wrk\r\n\r\n"
GATEWAY_DIR = os.path.dirname(os.path.abspath(codec.__file__))
REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Gateway:
    """The gateway's cache and connections over a memory bus, with the fake service on it."""

    def __init__(self) -> None:
        self.clock = task.Clock()
        self.broker = MemoryBroker(self.clock)
        bus = self.broker.bus(clock=self.clock)
        bus.connect()
        self.clock.advance(0)
        self.broker.subscribe(f"access.{ROOT}", self._answer)
        self.broker.subscribe(f"access.{MODEL}", self._answer)
        self.broker.subscribe(f"get.{ROOT}", self._answer)
        for i in range(REFERENCES):
            self.broker.subscribe(f"get.bench.item.a.{i}", self._answer)
        self.work = WorkQueue()
        self.context = GatewayContext(ResourceCache(bus, self.work, reactor=self.clock), Config())

    def _answer(self, subject: str, _payload: bytes, reply: str, _headers: Any) -> None:
        if subject.startswith("access."):
            result: dict[str, Any] = {"get": True}
        elif subject == f"get.{ROOT}":
            result = {"collection": [{"rid": f"bench.item.a.{i}"} for i in range(REFERENCES)]}
        else:
            result = {"model": {"id": subject, "n": 1}}
        self.broker.publish(reply, orjson.dumps({"result": result}))

    def connect(self) -> Connection:
        conn = Connection(self.context, lambda _data: None)
        conn.set_version("1.2.3")
        return conn

    def subscribe(self, conn: Connection) -> dict[str, Any]:
        """Subscribe ROOT on ``conn``: the resource set of the response."""
        answers: list[tuple[Any, Any]] = []
        self.work.enqueue(lambda: conn.subscribe_resource(ROOT, lambda result, error: answers.append((result, error))))
        for _ in range(10_000):
            if answers:
                break
            self.clock.advance(0)
        if not answers or answers[0][1] is not None:
            raise RuntimeError(f"subscribe {ROOT} failed: {answers}")
        return answers[0][0]

    def dispose(self, conn: Connection) -> None:
        self.work.enqueue(conn.dispose)
        self.clock.advance(0)

    def http_client(self) -> HttpClient:
        """One keep-alive connection to the gateway's HTTP site."""
        config = self.context.config
        api = ApiResource(self.context)
        # As service.py builds it; nothing here upgrades, so the API stands in for the WebSocket resource.
        site = GatewaySite(GatewayRoot(config.ws_path, api, config.api_path, api), HttpBounds.of(config),
                           reactor=self.clock, plain_get=PlainGet(config.ws_path, config.api_path, api))
        return HttpClient(self, site)


class HttpClient:
    """A client's connection to the HTTP site, over an in-memory transport."""

    def __init__(self, gateway: Gateway, site: GatewaySite) -> None:
        self.gateway = gateway
        self.channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        self.channel.makeConnection(self.transport)

    def get(self) -> bytes:
        """Send the cached GET; the response once it is whole."""
        self.transport.clear()
        self.channel.dataReceived(GET_REQUEST)
        for _ in range(10_000):
            response = self.transport.value()
            if b"\r\n\r\n" in response and response.endswith(b"}"):
                return response
            self.gateway.clock.advance(0)
        raise RuntimeError(f"no whole response to the GET: {self.transport.value()!r}")


#: What the in-process set-up adds and a gateway process does not run: the memory
#: bus and the service (tests/rig, bench), and the fake clock (twisted's task.Clock,
#: which sorts its timers by DelayedCall.getTime on every change).
SET_UP_FILES = (os.path.join(REPOSITORY, "tests"), os.path.join(REPOSITORY, "bench"), task.__file__)
CLOCK_SORT_KEY = (base.__file__, "getTime")


def counted_calls(profile: cProfile.Profile, *, gateway_only: bool = True) -> int:
    """Python calls counted, recursive ones included: of functions in resgate's modules,
    or of every Python function but the set-up's (built-in functions are not counted)."""
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]  # the raw table pstats keeps, not in its stubs
    if gateway_only:
        return sum(calls for (filename, _, _), (_, calls, _, _, _) in stats.items() if filename.startswith(GATEWAY_DIR))
    return sum(calls for (filename, _, name), (_, calls, _, _, _) in stats.items()
               if filename != "~" and not filename.startswith(SET_UP_FILES) and (filename, name) != CLOCK_SORT_KEY)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.calls", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20, help="warm subscribes counted (default 20)")
    args = parser.parse_args(argv)
    gateway = Gateway()
    holder = gateway.connect()
    resources = gateway.subscribe(holder)
    if len(resources.get("models", {})) != REFERENCES:
        raise RuntimeError(f"the cold subscribe sent {len(resources.get('models', {}))} models")
    subscribing, disposing = cProfile.Profile(), cProfile.Profile()
    for _ in range(args.rounds):
        conn = gateway.connect()
        subscribing.enable()
        resources = gateway.subscribe(conn)
        subscribing.disable()
        if len(resources["models"]) != REFERENCES:
            raise RuntimeError("a warm subscribe did not send every model")
        disposing.enable()
        gateway.dispose(conn)
        disposing.disable()
    print(f"warm subscribe of {REFERENCES:,} references: {counted_calls(subscribing) / args.rounds:,.0f} gateway calls; "
          f"disposing its connection: {counted_calls(disposing) / args.rounds:,.0f} ({args.rounds} rounds)")
    client = Gateway().http_client()  # a gateway of its own: no timers left by the subscribes
    if not client.get().startswith(b"HTTP/1.1 200 "):  # the first GET loads the model into the cache
        raise RuntimeError("the cached GET was not answered 200")
    getting = cProfile.Profile()
    for _ in range(args.rounds):
        getting.enable()
        response = client.get()
        getting.disable()
        if not response.startswith(b"HTTP/1.1 200 "):
            raise RuntimeError(f"a cached GET was answered {response[:40]!r}")
    print(f"cached HTTP GET: {counted_calls(getting, gateway_only=False) / args.rounds:,.0f} calls, "
          f"{counted_calls(getting) / args.rounds:,.0f} of them the gateway's ({args.rounds} rounds)")


if __name__ == "__main__":
    main()
