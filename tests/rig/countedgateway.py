"""``python -m tests.rig.countedgateway ARGS``: ``python -m resgate ARGS`` that also
counts its live objects when asked.

A leak check of a gateway in its own process needs counts from inside it:
RSS mixes what is held with garbage the cyclic collector has not reached
yet. Creating the file named by ``RESGATE_COUNT_REQUEST`` asks; a thread
sees it within a second, runs a full collection, writes the live instances
of the gateway's per-connection and per-resource classes as JSON to that
name plus ``.json``, and removes the request. The gateway itself runs
unchanged.
"""

from __future__ import annotations

import gc
import json
import os
import threading
import time

from resgate.cache.cache import CachedResource, NameEntry
from resgate.cache.resources import Collection, Model, ResourceEvent
from resgate.cli import main
from resgate.connection import Connection
from resgate.subscription import Subscription
from resgate.ws import ClientProtocol

REQUEST_ENV = "RESGATE_COUNT_REQUEST"
GATEWAY_CLASSES = (Connection, Subscription, CachedResource, NameEntry, ResourceEvent,
                   Model, Collection, ClientProtocol)


def live_gateway_objects() -> dict[str, int]:
    """Live instances of the gateway's per-connection and per-resource classes, after a full collection."""
    gc.collect()
    counts = dict.fromkeys((cls.__name__ for cls in GATEWAY_CLASSES), 0)
    for obj in gc.get_objects():
        if isinstance(obj, GATEWAY_CLASSES):
            counts[type(obj).__name__] += 1
    return counts


def answer_count_requests(request_path: str) -> None:
    while True:
        time.sleep(0.2)
        if os.path.exists(request_path):
            with open(request_path + ".tmp", "w", encoding="utf-8") as f:
                json.dump(live_gateway_objects(), f)
            os.replace(request_path + ".tmp", request_path + ".json")
            os.remove(request_path)


if __name__ == "__main__":
    threading.Thread(target=answer_count_requests, args=(os.environ[REQUEST_ENV],), daemon=True).start()
    main()
