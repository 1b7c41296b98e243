"""Ceiling: raw nats-py request/reply throughput against the fake service.

    python -m bench.natsreq --nats URL [--seconds 3] [--inflight 64]

Sends ``call.bench.model.ping`` requests straight over NATS (no gateway),
keeping ``inflight`` outstanding, and prints one JSON line:
``{"requests": N, "seconds": S, "rate": N/S}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import nats

PAYLOAD = b'{"cid":"bench","params":{"n":1}}'


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nats", required=True)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--inflight", type=int, default=64)
    args = parser.parse_args()
    nc = await nats.connect(args.nats)
    await nc.request("call.bench.model.ping", PAYLOAD, timeout=5)  # warm-up
    done = 0
    start = time.monotonic()
    deadline = start + args.seconds

    async def worker() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            await nc.request("call.bench.model.ping", PAYLOAD, timeout=5)
            done += 1

    await asyncio.gather(*(worker() for _ in range(args.inflight)))
    elapsed = time.monotonic() - start
    await nc.close()
    print(json.dumps({"requests": done, "seconds": elapsed, "rate": done / elapsed}))


if __name__ == "__main__":
    asyncio.run(main())
