#!/usr/bin/env python3
"""Client Session: sessions that survive page reloads and reconnects.

Two small services on one connection:

- session: auth session.login {username, password} starts a session,
  sets the connection's token and answers with a one-time relogin key;
  auth session.relogin {reloginKey} resumes the session on the calling
  connection (after a reload, or a reconnect to a restarted gateway) and
  answers with a new key; auth session.logout ends it.
  session.user.{cid} is each connection's own model of its user: a page
  gets "session.user.{cid}" and the gateway puts in its connection ID;
  only that connection may get it.
- ticker: ticker.model {seconds}, counted up every second, for any
  connection whose token has a role.

A relogin key works once, and expires EXPIRE seconds after it was issued
(the page renews it every minute). Using an old key again ends the session,
as it may have been stolen. Sessions live in memory: a restart of this
service logs everyone out.

Serves the web client (index.html) on http://127.0.0.1:8086.
"""

import secrets
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # examples/, where page.py lives

from page import run  # noqa: E402
from resservice import Access, Request, ResError, Service, invalid_params  # noqa: E402

USERS = {
    "admin": {"id": 1, "name": "Administrator", "role": "admin", "password": "admin"},
    "guest": {"id": 2, "name": "Guest", "role": "guest", "password": "guest"},
    "jane": {"id": 3, "name": "Jane Doe", "role": "user", "password": "jane"},
    "john": {"id": 4, "name": "John Doe", "role": "user", "password": "john"},
}
EXPIRE = 120.0  # seconds a relogin key is valid; the page renews it every 60
NO_USER = {"id": None, "name": None, "role": None}

# Two roots (session, ticker): no service name, the reset patterns named.
service = Service(reset_resources=["ticker.>", "session.>"], reset_access=["ticker.>", "session.>"])


class Session:
    def __init__(self, user):
        self.sid = secrets.token_urlsafe(24)
        self.user = user
        self.cid = None
        self.keys = []  # relogin keys issued, the last one valid
        self.expiry = None  # the IDelayedCall that ends the session


sessions_by_key = {}
sessions_by_cid = {}


def user_info(user):
    return {"id": user["id"], "name": user["name"], "role": user["role"]}


def attach(session, cid):
    """Move the session to connection ``cid`` and give that connection its token."""
    if session.cid is not None:
        # One connection per session: the old one loses its token.
        service.token_event(session.cid, None)
        sessions_by_cid.pop(session.cid, None)
    session.cid = cid
    sessions_by_cid[cid] = session
    # The token stays with the gateway and the services; the client sees the
    # user model.
    service.token_event(cid, {"sid": session.sid, "userId": session.user["id"], "role": session.user["role"]})
    service.resource(f"session.user.{cid}").change(user_info(session.user))


def issue_key(session):
    """A new relogin key, the only valid one; the session expires EXPIRE after it."""
    from twisted.internet import reactor

    if session.expiry is not None and session.expiry.active():
        session.expiry.cancel()
    session.expiry = reactor.callLater(EXPIRE, dispose, session)
    key = secrets.token_urlsafe(24)
    session.keys.append(key)
    sessions_by_key[key] = session
    return key


def dispose(session):
    """End the session: its connection loses its token and user."""
    if session.expiry is not None and session.expiry.active():
        session.expiry.cancel()
    if session.cid is not None:
        service.resource(f"session.user.{session.cid}").change(NO_USER)
        service.token_event(session.cid, None)
        sessions_by_cid.pop(session.cid, None)
    for key in session.keys:
        sessions_by_key.pop(key, None)


@service.auth("session", "login")
def login(request: Request) -> dict:
    if request.token:
        raise ResError("session.alreadyLoggedIn", "Already logged in")
    params = request.params or {}
    username, password = params.get("username"), params.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        raise invalid_params("Invalid parameters")
    user = USERS.get(username.lower())
    if user is None or user["password"] != password:
        raise ResError("session.wrongUsernamePassword", "Wrong username or password")
    session = Session(user)
    attach(session, request.cid)
    return {"reloginKey": issue_key(session)}


@service.auth("session", "relogin")
def relogin(request: Request) -> dict:
    key = (request.params or {}).get("reloginKey")
    if not isinstance(key, str):
        raise invalid_params("Invalid parameters")
    session = sessions_by_key.get(key)
    if session is None or session.keys[-1] != key:
        if session is not None:
            # A key used twice may have been stolen: end the session.
            dispose(session)
        raise ResError("session.invalidReloginKey", "Invalid relogin key")
    if session.cid != request.cid:
        attach(session, request.cid)
    return {"reloginKey": issue_key(session)}


@service.auth("session", "logout")
def logout(request: Request) -> None:
    session = sessions_by_cid.get(request.cid)
    if session is not None:
        dispose(session)
    return None


@service.access("session.user.$cid")
def access_user(request: Request) -> Access:
    # A connection may only see its own user model.
    return Access(get=request.cid == request.path_params["cid"])


@service.model("session.user.$cid")
def get_user(request: Request) -> dict:
    session = sessions_by_cid.get(request.path_params["cid"])
    return user_info(session.user) if session else NO_USER


# --- the ticker -----------------------------------------------------------------

ticker = {"seconds": 0}


@service.access("ticker.model")
def access_ticker(request: Request) -> dict:
    return {"get": bool(request.token and request.token.get("role"))}


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
    run(service, page=HERE / "index.html", port=8086, description=__doc__, started=start_ticker)
