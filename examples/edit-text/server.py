#!/usr/bin/env python3
"""Edit Text: one text model, example.shared, edited live by every client.

- example.shared: a model {message}
- call example.shared.set {message}: change the message

Serves the web client (index.html) on http://127.0.0.1:8082.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # examples/, where page.py lives

from page import run  # noqa: E402
from resservice import Access, Request, Service, invalid_params  # noqa: E402

shared = {"message": "Edit me!"}

service = Service("example")


@service.model("shared")
def get_shared(request: Request) -> dict:
    return shared


@service.access("shared")
def access_shared(request: Request) -> Access:
    # Everyone may read the model and call its set method.
    return Access(get=True, call="set")


@service.call("shared", "set")
def set_shared(request: Request) -> None:
    message = (request.params or {}).get("message")
    if not isinstance(message, str):
        raise invalid_params("message must be a string")
    if message != shared["message"]:
        shared["message"] = message
        request.change({"message": message})
    return None


if __name__ == "__main__":
    run(service, page=HERE / "index.html", port=8082, description=__doc__)
