#!/usr/bin/env python3
"""JWT Authentication: a connection token from a JSON Web Token in a cookie.

- /login (on this server) sets the access-token cookie to a signed JWT,
  /logout clears it.
- auth auth.jwtHeader reads the JWT from the request's Cookie header (or an
  "Authorization: Bearer <jwt>" header), verifies it and sets its claims as
  the connection's token. The gateway calls it with the headers of a
  WebSocket upgrade (--wsheadauth auth.jwtHeader) or of every HTTP request
  (--headauth auth.jwtHeader); the page also calls it when it connects.
- example.model {message}: only for a token with a user claim, who may
  also call set {message}.

The JWTs are HS256, made and checked with the standard library (hmac),
so the example needs no JWT package.

Serves the web client (index.html) on http://127.0.0.1:8084.
"""

import base64
import hashlib
import hmac
import json
import sys
import time
from http.cookies import CookieError, SimpleCookie
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # examples/, where page.py lives

from page import run  # noqa: E402
from resservice import Access, Request, Service, invalid_params  # noqa: E402

SECRET = b"shhhhh"  # a real service keeps its secret out of the source
COOKIE = "access-token"
LIFETIME = 3600  # seconds a token is valid


# --- JSON Web Tokens (HS256) ---------------------------------------------------

def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_jwt(claims: dict, secret: bytes = SECRET) -> str:
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(claims).encode())
    signature = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(signature)}"


def verify_jwt(token: str, secret: bytes = SECRET) -> dict:
    """The claims of a valid, unexpired HS256 token; ValueError otherwise."""
    try:
        header, payload, signature = token.split(".")
        if json.loads(_unb64(header)).get("alg") != "HS256":
            raise ValueError("not an HS256 token")
        expected = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _unb64(signature)):
            raise ValueError("bad signature")
        claims = json.loads(_unb64(payload))
    except (ValueError, TypeError, AttributeError) as e:
        raise ValueError(f"invalid jwt token: {e}") from None
    if not isinstance(claims, dict):
        raise ValueError("invalid jwt token: claims are not an object")
    if "exp" in claims and claims["exp"] < time.time():
        raise ValueError("jwt token expired")
    return claims


def token_from_header(header: dict | None) -> str | None:
    """The JWT in the access-token cookie or an Authorization: Bearer header."""
    header = header or {}
    for value in header.get("Authorization", []):
        if value.startswith("Bearer "):
            return value[len("Bearer "):].strip()
    for value in header.get("Cookie", []):
        cookies = SimpleCookie()
        try:
            cookies.load(value)
        except CookieError:
            continue
        if COOKIE in cookies:
            return cookies[COOKIE].value
    return None


# --- the RES service -----------------------------------------------------------

model = {"message": "Hello, secure World!"}

# The auth resource (auth.jwtHeader) is outside example.>: no service name.
service = Service(reset_resources=["example.>"], reset_access=["example.>"])


@service.auth("auth", "jwtHeader")
def jwt_header(request: Request) -> None:
    jwt = token_from_header(request.header)
    if jwt is None:
        raise invalid_params("Invalid params: missing jwt token")
    try:
        claims = verify_jwt(jwt)
    except ValueError as e:
        raise invalid_params(f"Invalid params: {e}") from None
    # The gateway keeps the claims as the connection's token and passes them
    # along with its access, call and auth requests; the client never sees them.
    service.token_event(request.cid, claims)
    return None


@service.access("example.model")
def access_model(request: Request) -> Access:
    if request.token and request.token.get("user"):
        return Access(get=True, call="set")
    return Access()


@service.model("example.model")
def get_model(request: Request) -> dict:
    return model


@service.call("example.model", "set")
def set_model(request: Request) -> None:
    message = (request.params or {}).get("message")
    if not isinstance(message, str):
        raise invalid_params("message must be a string")
    if message != model["message"]:
        model["message"] = message
        request.change({"message": message})
    return None


# --- the login and logout pages ---------------------------------------------------

def login_pages():
    from twisted.web import resource

    class Login(resource.Resource):
        isLeaf = True

        def render_GET(self, request):
            jwt = sign_jwt({"user": "demo", "iat": int(time.time()), "exp": int(time.time()) + LIFETIME})
            request.addCookie(COOKIE, jwt, path="/", httpOnly=True, sameSite="lax", max_age=str(LIFETIME))
            request.setHeader(b"content-type", b"text/html; charset=utf-8")
            return b'The access-token cookie is now set. <a id="back" href="/">Go back</a>'

    class Logout(resource.Resource):
        isLeaf = True

        def render_GET(self, request):
            request.addCookie(COOKIE, "", path="/", httpOnly=True, sameSite="lax", max_age="0")
            request.setHeader(b"content-type", b"text/html; charset=utf-8")
            return b'The access-token cookie is now cleared. <a id="back" href="/">Go back</a>'

    return {"login": Login(), "logout": Logout()}


if __name__ == "__main__":
    run(service, page=HERE / "index.html", port=8084, description=__doc__, children=login_pages())
