"""The benchmark's service written with resservice: the same resources as bench/service.py.

    python -m bench.resservice_service --nats nats://127.0.0.1:4222

Run by ``python -m bench --service resservice``, so the gateway's figures
show what one resservice process answers (calls/s in ``ws_call``, gets/s in
``refs_1000`` cold) next to the hand-written fake service (bench/service.py).
"""

from __future__ import annotations

import argparse
import asyncio
import time

from resservice import ACCESS_GRANTED, Collection, Ref, Service, not_found

REFERENCES = 1000
MODEL = "bench.model"
#: The paced publishers under way (a task nobody holds may be collected).
_PACED: set[asyncio.Task[None]] = set()


def bench_service() -> tuple[Service, dict]:
    service = Service(reset_resources=[], reset_access=[])
    state = {"seq": 0, "t": 0.0}

    service.access(">", parallel=True)(lambda request: ACCESS_GRANTED)
    service.model(MODEL)(lambda request: dict(state))

    @service.collection("bench.refs.$tag")
    def refs(request):
        tag = request.path_params["tag"]
        return Collection([Ref(f"bench.item.{tag}.{i}") for i in range(REFERENCES)])

    @service.model("bench.item.$tag.$index")
    def item(request):
        index = request.path_params["index"]
        if not index.isdigit():
            raise not_found()
        return {"id": int(index), "name": f"Item {index}", "done": False}

    def change(resource) -> None:
        state["seq"] += 1
        state["t"] = time.time() * 1000
        resource.change({"seq": state["seq"], "t": round(state["t"], 3)})

    service.call(MODEL, "ping")(lambda request: request.params)

    @service.call(MODEL, "burst")
    def burst(request):
        for _ in range(int(request.params["count"])):
            change(request)
        return request.params

    @service.call(MODEL, "paced")
    def paced(request):
        count, rate = int(request.params["count"]), float(request.params["rate"])

        async def publish() -> None:
            start = time.monotonic()
            for i in range(count):
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                change(service.resource(MODEL))

        task = asyncio.ensure_future(publish())
        _PACED.add(task)
        task.add_done_callback(_PACED.discard)
        return request.params

    return service, state


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nats", required=True)
    args = parser.parse_args()
    service, _ = bench_service()
    service.on_serve(lambda s: print("ready", flush=True))
    await service.serve(args.nats, pending_size=64 * 1024 * 1024)


if __name__ == "__main__":
    asyncio.run(main())
