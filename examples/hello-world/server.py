#!/usr/bin/env python3
"""Hello World: a service with one static model, example.model.

Serves the web client (index.html) on http://127.0.0.1:8081.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # examples/, where page.py lives

from page import run  # noqa: E402
from resservice import Access, Request, Service  # noqa: E402

service = Service("example")


@service.model("model")
def get_model(request: Request) -> dict:
    return {"message": "Hello, World!"}


@service.access("model")
def access_model(request: Request) -> Access:
    return Access(get=True)


if __name__ == "__main__":
    run(service, page=HERE / "index.html", port=8081, description=__doc__)
