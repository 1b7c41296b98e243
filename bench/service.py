"""The benchmark's fake RES service: one nats-py process, answering fast.

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
"""

from __future__ import annotations

import argparse
import asyncio
import time

import nats
import orjson

REFERENCES = 1000
ACCESS = b'{"result":{"get":true,"call":"*"}}'
NOT_FOUND = b'{"error":{"code":"system.notFound","message":"Not found"}}'
MODEL = "bench.model"


class Service:
    def __init__(self, nc) -> None:
        self.nc = nc
        self.seq = 0
        self.t = 0.0
        self.tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        nc = self.nc
        await nc.subscribe("access.>", cb=self.on_access)
        await nc.subscribe("get.>", cb=self.on_get)
        await nc.subscribe("call.>", cb=self.on_call)
        await nc.flush()

    async def on_access(self, msg) -> None:
        await self.nc.publish(msg.reply, ACCESS)

    async def on_get(self, msg) -> None:
        rid = msg.subject[4:]
        if rid == MODEL:
            result = {"model": {"seq": self.seq, "t": self.t}}
        elif rid.startswith("bench.refs."):
            tag = rid[len("bench.refs."):]
            result = {"collection": [{"rid": f"bench.item.{tag}.{i}"} for i in range(REFERENCES)]}
        elif rid.startswith("bench.item."):
            index = rid.rpartition(".")[2]
            result = {"model": {"id": int(index), "name": f"Item {index}", "done": False}}
        else:
            await self.nc.publish(msg.reply, NOT_FOUND)
            return
        await self.nc.publish(msg.reply, orjson.dumps({"result": result}))

    async def on_call(self, msg) -> None:
        rid, _, method = msg.subject[5:].rpartition(".")
        params = orjson.loads(msg.data).get("params") if msg.data else None
        if rid != MODEL or method not in ("ping", "burst", "paced"):
            await self.nc.publish(msg.reply, NOT_FOUND)
            return
        await self.nc.publish(msg.reply, orjson.dumps({"result": params}))
        if method == "burst":
            await self.publish_changes(int(params["count"]))
        elif method == "paced":
            task = asyncio.ensure_future(self.publish_paced(int(params["count"]), float(params["rate"])))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def publish_changes(self, count: int) -> None:
        for _ in range(count):
            await self.publish_change()
        await self.nc.flush()

    async def publish_paced(self, count: int, rate: float) -> None:
        start = time.monotonic()
        for i in range(count):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.publish_change()
            await self.nc.flush()

    async def publish_change(self) -> None:
        self.seq += 1
        self.t = time.time() * 1000
        payload = b'{"values":{"seq":%d,"t":%.3f}}' % (self.seq, self.t)
        await self.nc.publish(f"event.{MODEL}.change", payload)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nats", required=True)
    args = parser.parse_args()
    nc = await nats.connect(args.nats, pending_size=64 * 1024 * 1024)
    await Service(nc).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
