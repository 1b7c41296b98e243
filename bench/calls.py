"""The gateway's own function calls per warm subscribe of 1,000 references, counted in process.

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
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
from typing import Any

import orjson
from twisted.internet import task

from resgate import codec
from resgate.cache.cache import ResourceCache
from resgate.config import Config
from resgate.connection import Connection
from resgate.context import GatewayContext
from resgate.workqueue import WorkQueue
from tests.rig.memorybus import MemoryBroker

REFERENCES = 1000
ROOT = "bench.refs.a"
GATEWAY_DIR = os.path.dirname(os.path.abspath(codec.__file__))


class Gateway:
    """The gateway's cache and connections over a memory bus, with the fake service on it."""

    def __init__(self) -> None:
        self.clock = task.Clock()
        self.broker = MemoryBroker(self.clock)
        bus = self.broker.bus(clock=self.clock)
        bus.connect()
        self.clock.advance(0)
        self.broker.subscribe(f"access.{ROOT}", self._answer)
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


def gateway_calls(profile: cProfile.Profile) -> int:
    """Calls of functions defined in resgate's modules, recursive ones included."""
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]  # the raw table pstats keeps, not in its stubs
    return sum(calls for (filename, _, _), (_, calls, _, _, _) in stats.items()
               if filename.startswith(GATEWAY_DIR))


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
    print(f"warm subscribe of {REFERENCES:,} references: {gateway_calls(subscribing) / args.rounds:,.0f} gateway calls; "
          f"disposing its connection: {gateway_calls(disposing) / args.rounds:,.0f} ({args.rounds} rounds)")


if __name__ == "__main__":
    main()
