"""Security review: TLS versions, secrets in logs, CORS origin matching, headers a
service or a client sets.

| item | scenarios here | elsewhere |
| --- | --- | --- |
| TLS listener refuses TLS 1.0/1.1; accepts 1.2/1.3 | test_tls_listener_* | test_service.py::test_tls_serves_https |
| NATS client TLS refuses servers below TLS 1.2 | test_nats_tls_* | test_nats_security.py |
| no secret in logs below trace (tokens, Cookie, Authorization, passwords, creds) | test_no_*_in_logs* | test_logging.py |
| ``--alloworigin`` matches whole origins (ASCII case aside) | test_origin_* | test_ws_connect.py, rig/api.py |
| meta cannot set framing or hop-by-hop headers | test_meta_cannot_set_* | test_http_hostile.py, test_http_meta.py |
| services see the socket's address, whatever the client claims | test_remote_address_* | test_ws_auth.py |

Each TLS version check makes a real handshake from Python's ssl module with
the version pinned. A refusal counts only if the same client completes that
handshake with a server that allows the version; if it cannot, the test
fails rather than pass vacuously. SSLv3 is not among them: OpenSSL 3, which
the gateway's pyOpenSSL and this Python both use, cannot speak it at all.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, threads
from twisted.logger import formatEvent, globalLogPublisher

from resgate.natsbus import NatsBus
from tests.rig.aio import failure_of, within
from tests.rig.api import parse_response, raw_request, send, upgrade_request
from tests.rig.nats import NatsServer
from tests.rig.natsjwt import write_operator_setup
from tests.rig.pki import write_pki
from tests.rig.resources import assert_no_event, get_cid
from tests.rig.service import FakeService
from tests.rig.tls import write_self_signed_cert
from tests.rig.ws import connect_ws

#: TLS versions a client may pin, and whether the gateway must accept them.
TLS_VERSIONS = [
    pytest.param(ssl.TLSVersion.TLSv1, False, id="TLSv1.0"),
    pytest.param(ssl.TLSVersion.TLSv1_1, False, id="TLSv1.1"),
    pytest.param(ssl.TLSVersion.TLSv1_2, True, id="TLSv1.2"),
    pytest.param(ssl.TLSVersion.TLSv1_3, True, id="TLSv1.3"),
]

#: Lets OpenSSL 3 offer and accept the old versions (their signatures use SHA-1).
LEGACY_CIPHERS = "DEFAULT:@SECLEVEL=0"

# The old versions are what these tests pin, on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:ssl.TLSVersion.*is deprecated:DeprecationWarning")

# ---------------------------------------------------------------------------
# TLS: real handshakes with one version


def pinned_client(version: ssl.TLSVersion, ca: str | None = None) -> ssl.SSLContext:
    """A client context that offers only ``version``; it trusts ``ca`` (or anything)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca is None:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context.load_verify_locations(cafile=ca)
    context.set_ciphers(LEGACY_CIPHERS)
    context.minimum_version = version
    context.maximum_version = version
    return context


def pinned_server(version: ssl.TLSVersion | None, cert: str, key: str) -> ssl.SSLContext:
    """A server context that allows only ``version`` (every version if None)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.set_ciphers(LEGACY_CIPHERS)
    context.minimum_version = version or ssl.TLSVersion.MINIMUM_SUPPORTED
    context.maximum_version = version or ssl.TLSVersion.MAXIMUM_SUPPORTED
    return context


def handshake(port: int, context: ssl.SSLContext) -> str:
    """Connect to loopback ``port`` and complete a TLS handshake; the version agreed.

    Raises ssl.SSLError (or ConnectionError) if the server refuses. Blocking:
    run it in a thread.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            return tls.version()


class OneHandshakeServer:
    """A loopback TLS server in a thread that makes one handshake (after ``greeting``, in clear).

    ``result`` is the version agreed, or the exception the handshake raised.
    """

    def __init__(self, context: ssl.SSLContext, greeting: bytes = b"") -> None:
        self.context = context
        self.greeting = greeting
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(10)
        self.port = self.sock.getsockname()[1]
        self.result: Any = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
            with conn:
                conn.settimeout(10)
                conn.sendall(self.greeting)
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    self.result = tls.version()
        except Exception as e:  # the handshake's outcome is the result
            self.result = e
        finally:
            self.sock.close()
            self.done.set()

    def wait(self) -> Any:
        assert self.done.wait(10), "the handshake did not end"
        self.thread.join(5)
        return self.result


def require_client_can_speak(version: ssl.TLSVersion, cert: str, key: str) -> None:
    """Fail unless this Python/OpenSSL completes a ``version`` handshake with a server that allows it."""
    try:
        client = pinned_client(version)
        server = OneHandshakeServer(pinned_server(None, cert, key))
        agreed = handshake(server.port, client)
    except (ssl.SSLError, ValueError, OSError) as e:
        pytest.fail(f"this OpenSSL cannot make a {version.name} handshake, so a refusal would prove nothing: {e}")
    server.wait()
    assert agreed == _name(version), agreed


def _name(version: ssl.TLSVersion) -> str:
    return {"TLSv1": "TLSv1", "TLSv1_1": "TLSv1.1", "TLSv1_2": "TLSv1.2", "TLSv1_3": "TLSv1.3"}[version.name]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[str, str]:
    return write_self_signed_cert(tmp_path_factory.mktemp("tls"))


def relax_openssl_policy(monkeypatch) -> None:
    """Let the listener's OpenSSL accept what its security level forbids (SHA-1, old versions).

    Distributions set different default security levels (this one refuses
    TLS 1.0/1.1 at level 2 on its own); with level 0 only the gateway's own
    minimum version is left to refuse them.
    """
    from twisted.internet import _sslverify

    get_context = _sslverify.OpenSSLCertificateOptions.getContext

    def relaxed(self):
        context = get_context(self)
        context.set_cipher_list(LEGACY_CIPHERS.encode())
        return context

    monkeypatch.setattr(_sslverify.OpenSSLCertificateOptions, "getContext", relaxed)


@pytest.mark.parametrize("openssl_policy", ["system", "relaxed"])
@pytest.mark.parametrize("version, accepted", TLS_VERSIONS)
@pytest_twisted.ensureDeferred
async def test_tls_listener_accepts_only_tls_1_2_and_later(gateway_factory, certificate, monkeypatch,
                                                           version, accepted, openssl_policy):
    """The ``ssl:`` endpoint's CertificateOptions allow no version below TLS 1.2
    (Twisted's default minimum, as Go's server default), whatever OpenSSL's policy."""
    cert, key = certificate
    if openssl_policy == "relaxed":
        relax_openssl_policy(monkeypatch)
    await within(threads.deferToThread(require_client_can_speak, version, cert, key), 15)
    gateway = await gateway_factory(tls=True, tls_cert=cert, tls_key=key)
    outcome = handshake_outcome(gateway.port, pinned_client(version))
    result = await within(threads.deferToThread(outcome), 10)
    if accepted:
        assert result == _name(version)
    else:
        assert isinstance(result, (ssl.SSLError, ConnectionError)), result


def handshake_outcome(port: int, context: ssl.SSLContext):
    """A function for a thread: the version agreed with loopback ``port``, or the error."""
    def run() -> Any:
        try:
            return handshake(port, context)
        except (ssl.SSLError, ConnectionError) as e:
            return e
    return run


@pytest_twisted.ensureDeferred
async def test_tls_listener_serves_the_api_over_tls_1_3(gateway_factory, fake_service, certificate):
    cert, key = certificate
    gateway = await gateway_factory(tls=True, tls_cert=cert, tls_key=key)
    context = pinned_client(ssl.TLSVersion.TLSv1_3, ca=cert)

    def get() -> bytes:
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"GET /api/sec/model HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                data = b""
                while chunk := tls.recv(65536):
                    data += chunk
                return data

    fake_service.on("access.sec.model", lambda r: r.respond_result({"get": True}))
    fake_service.on("get.sec.model", lambda r: r.respond_result({"model": {"ok": True}}))
    response = parse_response(await within(threads.deferToThread(get), 10))
    assert (response.status, json.loads(response.body)) == (200, {"ok": True})


# ---------------------------------------------------------------------------
# TLS towards NATS

#: The first line a nats-server sends, for a server that requires TLS.
NATS_TLS_INFO = b'INFO {"server_id":"fake","version":"2.10.0","tls_required":true,"max_payload":1048576}\r\n'


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return write_pki(tmp_path_factory.mktemp("pki"))


@pytest.mark.parametrize("version, accepted", TLS_VERSIONS)
@pytest_twisted.ensureDeferred
async def test_nats_tls_accepts_only_tls_1_2_and_later(pki, version, accepted):
    """A NATS server that requires TLS and allows only ``version``: the gateway's
    NATS client (with --natsrootca, its own TLS context) completes the handshake
    only for TLS 1.2 and later. (The fake server then hangs up: connecting fails either way.)"""
    await within(threads.deferToThread(require_client_can_speak, version, pki.server_cert, pki.server_key), 15)
    server = OneHandshakeServer(pinned_server(version, pki.server_cert, pki.server_key), greeting=NATS_TLS_INFO)
    client = NatsBus(f"nats://127.0.0.1:{server.port}", root_cas=[pki.ca_cert])
    await failure_of(client.connect(), 15)
    result = await within(threads.deferToThread(server.wait), 15)
    if accepted:
        assert result == _name(version)
    else:
        assert isinstance(result, (ssl.SSLError, ConnectionError, OSError)), result


def test_nats_tls_default_context_has_tls_1_2_minimum():
    """Without --natscert/--natskey/--natsrootca nats-py makes its own default context."""
    assert ssl.create_default_context().minimum_version >= ssl.TLSVersion.TLSv1_2


# ---------------------------------------------------------------------------
# Secrets in logs

#: Secrets that pass through the gateway in the log scenario, by where they come from.
SECRETS = {
    "token (conn event)": "tok-7f3a9c",
    "token set by header auth": "tok-hdr-51be",
    "token of a broken token event": "tok-bad-0d2e",
    "Authorization (WebSocket)": "Bearer ws-auth-8c41",
    "Cookie (WebSocket)": "ws-cookie-3e9b",
    "Authorization (HTTP)": "Basic http-auth-77d0",
    "Cookie (HTTP)": "http-cookie-a2f6",
    "query string": "qs-jwt-19cc",
    "auth params": "pw-params-c0de",
    "Set-Cookie from a service": "svc-cookie-4b4b",
    "Set-Cookie in a broken meta": "svc-cookie-bad-6e6e",
    "NATS password": "nats-pass-5a5a",
}
#: The ones that reach a trace (the NATS password and the service's cookies never
#: travel in a NATS message or client message the gateway traces).
TRACED = ["token (conn event)", "token set by header auth", "Authorization (WebSocket)", "Cookie (WebSocket)",
          "Authorization (HTTP)", "Cookie (HTTP)", "query string", "auth params"]


class AllEvents:
    """Every log event of the process, as text: the formatted message and every field."""

    def __init__(self) -> None:
        self.events: list[tuple[dict, str]] = []

    def __call__(self, event: dict) -> None:
        fields = {k: v for k, v in event.items() if k not in ("log_logger", "log_source", "log_format")}
        self.events.append((event, f"{formatEvent(event)} {fields!r}"))

    def containing(self, secret: str, *, trace: bool) -> list[str]:
        """The texts of events (trace records or not) that hold ``secret``."""
        return [text for event, text in self.events
                if bool(event.get("resgate_trace")) == trace and secret in text]


@pytest.fixture
def all_events():
    events = AllEvents()
    globalLogPublisher.addObserver(events)
    yield events
    globalLogPublisher.removeObserver(events)


@pytest.fixture(scope="module")
def password_nats():
    server = NatsServer(extra_args=("--user", "gw", "--pass", SECRETS["NATS password"])).start()
    yield server
    server.cleanup()


@pytest_twisted.async_yield_fixture
async def secure_service(password_nats):
    service = await FakeService(secret_nats_url(password_nats)).start()
    yield service
    await service.stop()


def secret_nats_url(server) -> str:
    return f"nats://gw:{SECRETS['NATS password']}@127.0.0.1:{server.port}"


async def pass_secrets_through(gateway, service) -> None:
    """Make the gateway handle every secret of SECRETS, the way clients and services do."""
    set_cookie = {"meta": {"header": {"Set-Cookie": [f"s={SECRETS['Set-Cookie from a service']}"]}}}
    broken_meta = {"meta": {"header": f"Set-Cookie: s={SECRETS['Set-Cookie in a broken meta']}"}}

    # A WebSocket with credentials in headers and query; its upgrade makes an auth request.
    connecting = connect_ws(gateway.ws_url + f"?jwt={SECRETS['query string']}", headers={
        "Authorization": SECRETS["Authorization (WebSocket)"], "Cookie": f"c={SECRETS['Cookie (WebSocket)']}"})
    auth = (await service.take("auth.sec.ws"))["auth.sec.ws"]
    auth.respond({"result": None, **set_cookie})
    client = await connecting
    await client.request("version", {"protocol": "1.2.3"})
    cid = await get_cid(client, service)

    # An auth request with a password, answered with a token event.
    pending = client.request("auth.sec.login", {"password": SECRETS["auth params"]})
    login = (await service.take("auth.sec.login"))["auth.sec.login"]
    service.publish(f"conn.{cid}.token", {"token": {"user": SECRETS["token (conn event)"]}})
    login.respond_result(None)
    await pending
    service.publish(f"conn.{cid}.token", [{"token": SECRETS["token of a broken token event"]}])

    # The token travels with access and call requests.
    pending = client.request("call.sec.model.set", {"x": 1})
    (await service.take("access.sec.model"))["access.sec.model"].respond_result({"get": True, "call": "*"})
    (await service.take("call.sec.model.set"))["call.sec.model.set"].respond({"result": None, **set_cookie})
    await pending
    await assert_no_event(client, service, "sec")

    # HTTP with Authorization and Cookie: header auth sets a token.
    pending = send(gateway, "GET", "sec/model", headers={
        "Authorization": SECRETS["Authorization (HTTP)"], "Cookie": f"c={SECRETS['Cookie (HTTP)']}"})
    auth = (await service.take("auth.sec.http"))["auth.sec.http"]
    service.publish(f"conn.{auth.payload['cid']}.token", {"token": {"user": SECRETS["token set by header auth"]}})
    auth.respond({"result": None, **set_cookie})
    requests = await service.take("access.sec.model", "get.sec.model")
    requests["access.sec.model"].respond({"result": {"get": True}, **broken_meta})
    requests["get.sec.model"].respond_result({"model": {"ok": True}})
    response = await pending
    assert response.status == 200, response
    await client.close()


@pytest.mark.parametrize("trace", [False, True], ids=["debug", "debug-and-trace"])
@pytest_twisted.ensureDeferred
async def test_no_secrets_in_logs_below_trace(gateway_factory, password_nats, secure_service, all_events,
                                              logged_errors, trace):
    """With -D (and -V), no log record but a trace record holds a token, a password,
    an Authorization or Cookie value, or a cookie a service sets; trace records
    (-V, whole messages, as Resgate traces them) do hold the ones they carry."""
    gateway = await gateway_factory(nats_url=secret_nats_url(password_nats), debug=True, trace=trace,
                                    ws_header_auth="sec.ws", header_auth="sec.http")
    await pass_secrets_through(gateway, secure_service)
    # The broken token event and the broken meta header are logged errors.
    await logged_errors.expect(2)

    assert any("Connected to NATS" in text for _, text in all_events.events)
    for what, secret in SECRETS.items():
        assert all_events.containing(secret, trace=False) == [], what
    for what in TRACED:
        # The scenario did pass each one through the gateway.
        assert bool(all_events.containing(SECRETS[what], trace=True)) == trace, what


# ---------------------------------------------------------------------------
# --alloworigin: whole origins, ASCII case aside, as Resgate compares them

ORIGIN_MATCHING = [
    pytest.param("http://a.com.evil.com", "http://a.com", False, id="allowed-origin-as-prefix"),
    pytest.param("http://evila.com", "http://a.com", False, id="allowed-host-as-suffix"),
    pytest.param("http://a.co", "http://a.com", False, id="prefix-of-allowed-origin"),
    pytest.param("https://a.com", "http://a.com", False, id="other-scheme"),
    pytest.param("http://a.com:80", "http://a.com", False, id="explicit-default-port"),
    pytest.param("http://a.com/", "http://a.com", False, id="trailing-slash"),
    pytest.param("http://a.com http://evil.com", "http://a.com", False, id="two-origins-in-one-value"),
    pytest.param("http://\u212a.com", "http://k.com", False, id="unicode-lowercasing"),
    pytest.param("http://A.COM", "http://a.com", True, id="upper-case-origin"),
    pytest.param("http://a.com", "HTTP://A.Com", True, id="upper-case-setting"),
    pytest.param("http://a.com", "http://b.com;http://a.com", True, id="second-of-two"),
]


@pytest.mark.parametrize("origin, allow_origin, allowed", ORIGIN_MATCHING)
@pytest_twisted.ensureDeferred
async def test_origin_must_match_a_whole_allowed_origin_over_http(gateway_factory, fake_service, origin,
                                                                  allow_origin, allowed):
    gateway = await gateway_factory(allow_origin=allow_origin)
    fake_service.on("access.sec.model", lambda r: r.respond_result({"get": True}))
    fake_service.on("get.sec.model", lambda r: r.respond_result({"model": {"ok": True}}))
    request = (b"GET /api/sec/model HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: " + origin.encode()
               + b"\r\nConnection: close\r\n\r\n")
    response = await raw_request(gateway.port, request)
    allow = response.all("Access-Control-Allow-Origin")
    if allowed:
        assert (response.status, allow) == (200, [origin]), response
    else:
        assert response.status == 403, response
        # Resgate names its first allowed origin, never the one asking.
        assert allow == [sorted(allow_origin.lower().split(";"))[0]] and origin not in allow, response
        assert fake_service.requests == []


@pytest.mark.parametrize("origin, allow_origin, allowed", ORIGIN_MATCHING)
@pytest_twisted.ensureDeferred
async def test_origin_must_match_a_whole_allowed_origin_for_websockets(gateway_factory, origin, allow_origin,
                                                                       allowed):
    gateway = await gateway_factory(allow_origin=allow_origin)
    request = upgrade_request(headers={"Origin": origin}).decode("latin-1")
    response = await raw_request(gateway.port, request.encode("utf-8"))
    assert response.status == (101 if allowed else 403), response


# ---------------------------------------------------------------------------
# --refusenullorigin: "Origin: null" (a sandboxed iframe, a file:// page)

ALLOW_LIST = "http://a.com"
#: (Origin header, --alloworigin, refuseNullOrigin, allowed). Header parsers
#: strip the spaces around a value, so " null" is "null".
NULL_ORIGIN = [
    pytest.param("null", "*", False, True, id="null-passes-by-default"),
    pytest.param("null", ALLOW_LIST, False, True, id="null-passes-an-allow-list-by-default"),
    pytest.param("null", "*", True, False, id="null-refused-under-star"),
    pytest.param("null", ALLOW_LIST, True, False, id="null-refused-under-an-allow-list"),
    pytest.param("NULL", ALLOW_LIST, False, False, id="upper-case-is-no-allowed-origin-by-default"),
    pytest.param("NULL", "*", True, False, id="upper-case-refused"),
    pytest.param(" null", ALLOW_LIST, True, False, id="leading-space-refused"),
    pytest.param("null, null", "*", False, True, id="list-passes-star-by-default"),
    pytest.param("null, null", "*", True, False, id="list-naming-null-refused"),
    pytest.param("http://a.com,null", "*", True, False, id="allowed-origin-and-null-refused"),
    pytest.param("http://null", "*", True, True, id="host-named-null-is-an-origin"),
    pytest.param("http://a.com", ALLOW_LIST, True, True, id="allowed-origin-passes-with-refusal"),
    pytest.param("http://a.com", "*", True, True, id="any-origin-passes-star-with-refusal"),
    pytest.param(None, ALLOW_LIST, True, True, id="no-origin-passes-with-refusal"),
]


@pytest.mark.parametrize("origin, allow_origin, refuse, allowed", NULL_ORIGIN)
@pytest_twisted.ensureDeferred
async def test_null_origin_refused_only_when_asked_over_http(gateway_factory, fake_service, origin,
                                                             allow_origin, refuse, allowed):
    gateway = await gateway_factory(allow_origin=allow_origin, refuse_null_origin=refuse)
    fake_service.on("access.sec.model", lambda r: r.respond_result({"get": True}))
    fake_service.on("get.sec.model", lambda r: r.respond_result({"model": {"ok": True}}))
    origin_line = b"" if origin is None else b"Origin: " + origin.encode() + b"\r\n"
    request = (b"GET /api/sec/model HTTP/1.1\r\nHost: 127.0.0.1\r\n" + origin_line
               + b"Connection: close\r\n\r\n")
    response = await raw_request(gateway.port, request)
    if allowed:
        assert response.status == 200, response
        return
    # Refused as any disallowed origin is: 403, the error, the CORS headers of a refusal.
    assert (response.status, json.loads(response.body)) == (
        403, {"code": "system.forbidden", "message": "Forbidden origin"}), response
    assert response.all("Access-Control-Allow-Origin") == [allow_origin], response
    assert response.all("Vary") == ([] if allow_origin == "*" else ["Origin"]), response
    assert fake_service.requests == []


#: What Autobahn refuses (400) before the gateway's check: an Origin that is no URL.
NOT_AN_ORIGIN = {"null, null"}


@pytest.mark.parametrize("origin, allow_origin, refuse, allowed", NULL_ORIGIN)
@pytest_twisted.ensureDeferred
async def test_null_origin_refused_only_when_asked_for_websockets(gateway_factory, origin, allow_origin,
                                                                  refuse, allowed):
    gateway = await gateway_factory(allow_origin=allow_origin, refuse_null_origin=refuse)
    request = upgrade_request(headers={} if origin is None else {"Origin": origin})
    response = await raw_request(gateway.port, request)
    expected = 400 if origin in NOT_AN_ORIGIN else 101 if allowed else 403
    assert response.status == expected, response


@pytest.mark.parametrize("compression", [False, True], ids=["plain", "wscompression"])
@pytest_twisted.ensureDeferred
async def test_null_origin_upgrades_by_default_with_or_without_compression(gateway_factory, compression):
    """Fixed: Autobahn's own null check, on again with every setProtocolOptions call, answered 400."""
    gateway = await gateway_factory(ws_compression=compression)
    response = await raw_request(gateway.port, upgrade_request(headers={"Origin": "null"}))
    assert response.status == 101, response


@pytest_twisted.ensureDeferred
async def test_refused_null_origin_gets_no_header_auth_request(gateway_factory, fake_service):
    """With cookie-based --wsheadauth, the case the setting is for: no auth request, no upgrade."""
    gateway = await gateway_factory(allow_origin=ALLOW_LIST, refuse_null_origin=True, ws_header_auth="sec.ws")
    request = upgrade_request(headers={"Origin": "null", "Cookie": "session=s3cret"})
    response = await raw_request(gateway.port, request)
    assert response.status == 403, response
    assert fake_service.requests == []


# ---------------------------------------------------------------------------
# Headers a service sets (meta) or a client claims

#: Meta headers that would change how the response is framed or how the
#: connection is handled; the gateway owns them (the body it frames itself).
FRAMING_HEADERS = {
    "Content-Length": ["0"],
    "Transfer-Encoding": ["chunked"],
    "Connection": ["close, Access-Control-Allow-Origin"],
    "Keep-Alive": ["timeout=1"],
    "Proxy-Connection": ["close"],
    "TE": ["trailers"],
    "Trailer": ["X-Late"],
    "Upgrade": ["h2c"],
}


def pipelined_responses(port: int, request: bytes, count: int) -> list:
    """Send ``request`` ``count`` times on one connection; the responses, framed by
    their own Content-Length. Blocking: run it in a thread."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request * count)
        data = b""
        responses = []
        while len(responses) < count:
            head, sep, rest = data.partition(b"\r\n\r\n")
            if sep:
                response = parse_response(head + sep)
                length = int(response.header("Content-Length") or 0)
                if len(rest) >= length:
                    response.body = rest[:length]
                    responses.append(response)
                    data = rest[length:]
                    continue
            chunk = sock.recv(65536)
            if not chunk:
                raise AssertionError(f"connection closed after {len(responses)} responses: {data!r}")
            data += chunk
        return responses


@pytest.mark.parametrize("name", FRAMING_HEADERS)
@pytest_twisted.ensureDeferred
async def test_meta_cannot_set_framing_or_hop_by_hop_headers_over_http(gateway, fake_service, name):
    """A response a service adds ``name`` to is framed by its Content-Length alone,
    and the next response on the connection follows it intact."""
    header = {name: FRAMING_HEADERS[name], "X-Kept": ["yes"]}
    fake_service.on("access.sec.model", lambda r: r.respond({"result": {"get": True}, "meta": {"header": header}}))
    fake_service.on("get.sec.model", lambda r: r.respond_result({"model": {"ok": True}}))
    request = b"GET /api/sec/model HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    responses = await within(threads.deferToThread(pipelined_responses, gateway.port, request, 2), 10)
    for response in responses:
        assert (response.status, json.loads(response.body)) == (200, {"ok": True}), response
        assert response.header("X-Kept") == "yes"
        assert response.all(name) == [] or name == "Content-Length", response
        assert response.all("Content-Length") == [str(len(response.body))], response


@pytest_twisted.ensureDeferred
async def test_meta_cannot_set_framing_or_hop_by_hop_headers_on_upgrade(gateway_factory, fake_service):
    gateway = await gateway_factory(ws_header_auth="sec.ws")
    pending = defer.ensureDeferred(raw_request(gateway.port, upgrade_request()))
    auth = (await fake_service.take("auth.sec.ws"))["auth.sec.ws"]
    auth.respond({"result": None, "meta": {"header": {**FRAMING_HEADERS, "X-Kept": ["yes"]}}})
    response = await pending
    assert response.status == 101, response
    assert response.header("X-Kept") == "yes"
    assert response.all("Upgrade") == ["WebSocket"] or [v.lower() for v in response.all("Upgrade")] == ["websocket"]
    assert [v.lower() for v in response.all("Connection")] == ["upgrade"], response
    for name in ("Content-Length", "Transfer-Encoding", "Keep-Alive", "Proxy-Connection", "TE", "Trailer"):
        assert response.all(name) == [], response


@pytest.mark.parametrize("transport", ["http", "websocket"])
@pytest_twisted.ensureDeferred
async def test_remote_address_is_the_socket_peer_whatever_the_client_claims(gateway_factory, fake_service,
                                                                            transport):
    """Services see the peer address in ``remoteAddr``; headers a client adds to
    claim another (X-Forwarded-For, X-Real-IP, Forwarded) reach them only as headers."""
    gateway = await gateway_factory(header_auth="sec.http", ws_header_auth="sec.ws")
    claims = {"X-Forwarded-For": "203.0.113.9", "X-Real-Ip": "203.0.113.9", "Forwarded": "for=203.0.113.9"}
    if transport == "http":
        pending = send(gateway, "GET", "sec/model", headers=claims)
        subject = "auth.sec.http"
    else:
        pending = connect_ws(gateway.ws_url, headers=claims)
        subject = "auth.sec.ws"
    auth = (await fake_service.take(subject))[subject]
    payload = auth.payload
    assert payload["remoteAddr"].startswith("127.0.0.1:"), payload
    for name, value in claims.items():
        assert payload["header"][name] == [value], payload
    if transport == "http":
        auth.respond_result(None)
        requests = await fake_service.take("access.sec.model", "get.sec.model")
        assert "remoteAddr" not in requests["access.sec.model"].payload
        requests["access.sec.model"].respond_result({"get": True})
        requests["get.sec.model"].respond_result({"model": {}})
        assert (await pending).status == 200
    else:
        auth.respond_result(None)
        await (await pending).close()


@pytest.fixture(scope="module")
def operator_nats(tmp_path_factory):
    """A nats-server in operator mode, and the operator setup with a user's creds file."""
    operator = write_operator_setup(tmp_path_factory.mktemp("operator"))
    server = NatsServer(extra_args=operator.nats_server_args()).start()
    yield operator, server
    server.cleanup()


@pytest_twisted.ensureDeferred
async def test_no_creds_file_content_in_logs(gateway_factory, operator_nats, all_events):
    """With --creds, -D and -V, neither the user JWT nor the nkey seed is logged."""
    operator, server = operator_nats
    await gateway_factory(nats_url=server.url, nats_creds=operator.creds, debug=True, trace=True)
    with open(operator.creds) as f:
        lines = [line.strip() for line in f]
    jwt = lines[lines.index("-----BEGIN NATS USER JWT-----") + 1]
    seed = lines[lines.index("-----BEGIN USER NKEY SEED-----") + 1]
    assert any("Connected to NATS" in text for _, text in all_events.events)
    for secret in (jwt, seed, jwt.split(".")[2]):
        assert [text for _, text in all_events.events if secret in text] == []
