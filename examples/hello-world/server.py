#!/usr/bin/env python3
"""Hello World: a service with one static model, example.model.

Serves the web client (index.html) on http://127.0.0.1:8081.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # examples/, where ressvc.py lives

from ressvc import Model, Service, run  # noqa: E402

service = Service(reset=["example.model"])


@service.get("example.model")
def get_model(request):
    return Model({"message": "Hello, World!"})


@service.access("example.model")
def access_model(request):
    return {"get": True}


if __name__ == "__main__":
    run(service, page=HERE / "index.html", port=8081, description=__doc__)
