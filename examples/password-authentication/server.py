#!/usr/bin/env python3
"""Password Authentication: log in and out over auth requests; a protected ticker.

Two small services on one connection:

- passwd (auth only): auth passwd.login {password} sets the connection's
  token to {"user": "demo"} when the password is right (it is "secret"),
  auth passwd.logout sets it to null.
- ticker: ticker.model {seconds}, counted up every second by change events;
  only a connection whose token names a user may get it. When a client
  logs out, the gateway checks its access again and stops its events.

Serves the web client (index.html) on http://127.0.0.1:8085.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # examples/, where page.py lives

from page import run  # noqa: E402
from resservice import Request, Service, invalid_params  # noqa: E402

PASSWORD = "secret"

ticker = {"seconds": 0}

# Two roots (passwd, ticker): no service name, the reset pattern named.
service = Service(reset_resources=["ticker.>"], reset_access=["ticker.>"])


@service.auth("passwd", "login")
def login(request: Request) -> None:
    if (request.params or {}).get("password") != PASSWORD:
        raise invalid_params("Invalid params: wrong password")
    # The gateway keeps the token for the connection and passes it along with
    # the connection's access, call and auth requests; the client never sees it.
    service.token_event(request.cid, {"user": "demo"})
    return None


@service.auth("passwd", "logout")
def logout(request: Request) -> None:
    service.token_event(request.cid, None)
    return None


@service.access("ticker.model")
def access_ticker(request: Request) -> dict:
    return {"get": bool(request.token and request.token.get("user"))}


@service.model("ticker.model")
def get_ticker(request: Request) -> dict:
    return ticker


def tick():
    ticker["seconds"] += 1
    service.resource("ticker.model").change({"seconds": ticker["seconds"]})


def start_ticker():
    from twisted.internet import task

    task.LoopingCall(tick).start(1.0, now=False)


if __name__ == "__main__":
    run(service, page=HERE / "index.html", port=8085, description=__doc__, started=start_ticker)
