"""``--listen ENDPOINT``: the gateway on Twisted server endpoints (tcp:, ssl:, unix:, systemd:, haproxy:).

Each kind serves a real client over loopback or a Unix socket, with corked
client connections; a ``haproxy:`` listener shows the address of its PROXY
header to services as ``remoteAddr`` and closes connections without one.
"""

from __future__ import annotations

import gc
import json
import os
import re
import socket
import ssl
import struct
import subprocess
import sys
import time
import weakref

import pytest
import pytest_twisted
from twisted.internet import defer, threads
from twisted.internet.endpoints import serverFromString
from twisted.internet.ssl import TLSVersion
from twisted.logger import globalLogPublisher

from resgate.config import MAX_LISTEN_DESCRIPTION, MAX_LISTEN_ENDPOINTS, Config, ConfigError
from resgate.options import USAGE, Options, config_from_options
from resgate.service import LISTEN_BACKLOG, GatewayService
from resgate.transport import (
    MAX_PROXY_V2_BLOCK,
    CorkedServer,
    CorkedUNIXServer,
    ProxiedConnection,
    with_tls_minimum,
)
from tests.rig.aio import eventually, within
from tests.rig.process import GatewayProcess
from tests.rig.tls import write_self_signed_cert

#: A request the gateway answers without asking a service: its WebSocket path, not upgraded.
PLAIN_GET = b"GET / HTTP/1.1\r\nHost: gateway\r\n\r\n"
UPGRADE = (b"GET / HTTP/1.1\r\nHost: gateway\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
API_GET = b"GET /api/test/model HTTP/1.1\r\nHost: gateway\r\n\r\n"
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy_v1(source: str, port: int) -> bytes:
    return f"PROXY TCP4 {source} 127.0.0.1 {port} 8080\r\n".encode()


def proxy_v2(source: str, port: int) -> bytes:
    """A PROXY v2 header (PROXY command, TCP over IPv6) from ``source``:``port``."""
    addresses = socket.inet_pton(socket.AF_INET6, source) + socket.inet_pton(socket.AF_INET6, "::1")
    body = addresses + struct.pack("!HH", port, 8080)
    return V2_SIGNATURE + b"\x21\x21" + struct.pack("!H", len(body)) + body


def exchange(connect, data: bytes, until: bytes = b"\r\n\r\n") -> bytes:
    """For a thread: send ``data`` on the socket ``connect()`` opens; what comes back until
    ``until`` arrives or the gateway closes the connection."""
    with connect() as sock:
        sock.settimeout(10)
        sock.sendall(data)
        received = b""
        while until not in received:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
        return received


def tcp(port: int):
    return lambda: socket.create_connection(("127.0.0.1", port), timeout=10)


def unix(path: str):
    def connect() -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        sock.connect(path)
        return sock
    return connect


async def talk(connect, data: bytes, until: bytes = b"\r\n\r\n") -> bytes:
    return await within(threads.deferToThread(exchange, connect, data, until), 15)


async def remote_addr_of_api_get(fake_service, connect, prefix: bytes = b"") -> str:
    """The remoteAddr of the header auth request (``--headauth test.method``) of an API GET sent
    after ``prefix`` over ``connect()``; access is denied, and the client hears so."""
    pending = defer.ensureDeferred(talk(connect, prefix + API_GET))
    auth = (await fake_service.take("auth.test.method"))["auth.test.method"]
    auth.respond_result(None)
    requests = await fake_service.take("access.test.model", "get.test.model")
    requests["access.test.model"].respond_result({"get": False})
    requests["get.test.model"].respond_result({"model": {}})
    assert (await pending).startswith(b"HTTP/1.1 401 ")
    return auth.payload["remoteAddr"]


@pytest.fixture
def listening_gateway(gateway_factory):
    """``await listening_gateway(*descriptions, **settings)``: a started gateway on those endpoints."""
    return lambda *listen, **settings: gateway_factory(listen=list(listen), **settings)


def socket_under(transport):
    """The accepted socket's transport under any PROXY or TLS wrapper of a connection."""
    while hasattr(transport, "wrappedProtocol"):
        transport = transport.transport
    return transport


async def upgraded_transport(gateway: GatewayService, sock: socket.socket, prefix: bytes = b""):
    """Upgrade ``sock`` to a WebSocket; the transport of the gateway's side of it."""
    def upgrade() -> bytes:
        sock.settimeout(10)
        sock.sendall(prefix + UPGRADE)
        return sock.recv(65536)

    assert (await within(threads.deferToThread(upgrade), 15)).startswith(b"HTTP/1.1 101 ")
    await eventually(lambda: len(gateway.clients.protocols) == 1)
    (protocol,) = gateway.clients.protocols
    return protocol.transport


# --- settings ----------------------------------------------------------------


def config_of(*argv: str) -> Config:
    options = Options()
    options.parseOptions(list(argv))
    return config_from_options(options)


def test_listen_is_repeatable_and_written_only_when_set():
    config = config_of("--listen", "tcp:8081", "-listen=unix:/run/resgate.sock")
    assert config.listen == ["tcp:8081", "unix:/run/resgate.sock"]
    assert config.to_json()["listen"] == config.listen
    assert "listen" not in Config().to_json()


def test_help_lists_listen():
    assert "--listen <endpoint>" in USAGE
    assert "minTLS=1.2|1.3" in USAGE


@pytest.mark.parametrize("flag", [["--addr", "127.0.0.1"], ["--port", "8080"], ["--port", "9000"],
                                  ["--tls"], ["--tlscert", "c.pem"], ["--tlskey", "k.pem"]])
def test_listen_with_addr_port_or_tls_flags_is_one_error(flag):
    with pytest.raises(ConfigError, match=r"^listen from --listen cannot be combined with \w+ from --"):
        config_of("--listen", "tcp:8081", *flag)


def test_listen_with_addr_in_the_file_is_one_error(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"listen": ["tcp:8081"], "addr": "127.0.0.1"}))
    with pytest.raises(ConfigError, match=f"^listen in {path} cannot be combined with addr in {path}"):
        config_of("--config", str(path))


def test_listen_in_a_file_of_defaults_is_accepted(tmp_path):
    """A file written with the defaults (addr, port, tls...) takes a listen key added to it."""
    path = tmp_path / "config.json"
    document = Config().to_json()
    document["listen"] = ["tcp:8081"]
    path.write_text(json.dumps(document))
    assert config_of("--config", str(path)).listen == ["tcp:8081"]


@pytest.mark.parametrize("listen, problem", [
    ([""], "must be 1 to"),
    (["tcp:" + "1" * MAX_LISTEN_DESCRIPTION], "must be 1 to"),
    (["tcp:0"] * (MAX_LISTEN_ENDPOINTS + 1), f"at most {MAX_LISTEN_ENDPOINTS} endpoints"),
    ("tcp:8081", "must be a list of strings"),
    ([8081], "must be a list of strings"),
])
def test_malformed_listen_settings_are_refused(listen, problem):
    with pytest.raises(ConfigError, match=problem):
        Config(listen=listen)


@pytest.mark.parametrize("description", ["unix:/run/resgate.sock", "systemd:domain=INET:index=0",
                                         "haproxy:unix:/run/resgate.sock"])
def test_workers_cannot_share_unix_or_systemd_sockets(description):
    with pytest.raises(ConfigError, match=r"cannot be shared by --workers 2: a (unix|systemd): socket"):
        config_of("--listen", description, "--workers", "2")


def test_workers_may_share_tcp_and_ssl_endpoints():
    assert config_of("--listen", "tcp:8081", "--listen", "haproxy:ssl:8443", "--workers", "2").workers == 2


@pytest.mark.parametrize("description", ["tcp:0", "tcp:port=0:interface=127.0.0.1", "haproxy:ssl:0:certKey=c.pem"])
def test_workers_cannot_share_port_0(description):
    with pytest.raises(ConfigError, match=r"cannot be shared by --workers 2: with port 0 each process would"
                                          r" listen on a port of its own; name the port$"):
        config_of("--listen", description, "--workers", "2")


@pytest.mark.parametrize("description, problem", [
    ("carrier-pigeon:8080", "Unknown endpoint type"),
    ("tcp:port=8080:colour=blue", "unknown or missing parameter"),
    ("tcp:eighty", "invalid literal"),
    ("unix", "unknown or missing parameter"),
    ("ssl:8443:privateKey=/nonexistent/key.pem", "cannot read /nonexistent/key.pem"),
    ("systemd:domain=INET:index=0", "no such socket was passed to this process"),
    ("haproxy:carrier-pigeon:8080", "Unknown endpoint type"),
])
def test_a_description_twisted_cannot_parse_is_a_config_error(description, problem):
    with pytest.raises(ConfigError, match=f"^invalid listen {json.dumps(description)}: .*{problem}"):
        GatewayService(Config(listen=[description]))


def test_the_command_exits_on_a_bad_description_with_one_line():
    result = subprocess.run([sys.executable, "-m", "resgate", "--listen", "tcp:port=http"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        'resgate: invalid listen "tcp:port=http": invalid literal for int() with base 10: \'http\''
    ], result.stderr


# --- each kind with a real client --------------------------------------------


@pytest_twisted.ensureDeferred
async def test_tcp_with_interface_and_backlog(listening_gateway):
    gateway = await listening_gateway("tcp:0:interface=127.0.0.1:backlog=5")
    response = await talk(tcp(gateway.port), PLAIN_GET)
    assert response.startswith(b"HTTP/1.1 "), response
    assert gateway.listener.port.getHost().host == "127.0.0.1"
    assert gateway.listener.port.backlog == 5


@pytest_twisted.ensureDeferred
async def test_endpoints_without_a_backlog_get_the_gateway_s_not_twisted_s(listening_gateway, tmp_path):
    path = str(tmp_path / "gateway.sock")
    gateway = await listening_gateway("tcp:0:interface=127.0.0.1", f"unix:{path}")
    assert [listener.port.backlog for listener in gateway.listeners] == [LISTEN_BACKLOG, LISTEN_BACKLOG]


@pytest_twisted.ensureDeferred
async def test_several_endpoints_serve_one_gateway_with_corked_connections(listening_gateway, tmp_path):
    path = str(tmp_path / "gateway.sock")
    gateway = await listening_gateway("tcp:0:interface=127.0.0.1", f"unix:{path}:mode=600")
    assert [listener.port is not None for listener in gateway.listeners] == [True, True]
    assert gateway.readiness.reason() is None
    assert os.stat(path).st_mode & 0o777 == 0o600
    for connect, corked in ((tcp(gateway.port), CorkedServer), (unix(path), CorkedUNIXServer)):
        with connect() as sock:
            assert type(await upgraded_transport(gateway, sock)) is corked
        await eventually(lambda: not gateway.clients.protocols)


@pytest_twisted.ensureDeferred
async def test_http_api_over_a_unix_socket_has_no_remote_address(listening_gateway, fake_service, tmp_path):
    """Behind a local reverse proxy: the API answers, and services see an empty remoteAddr."""
    path = str(tmp_path / "gateway.sock")
    await listening_gateway(f"unix:{path}", header_auth="test.method")
    assert await remote_addr_of_api_get(fake_service, unix(path)) == ""


@pytest_twisted.ensureDeferred
async def test_ssl_with_certificate_key_and_chain(listening_gateway, tmp_path):
    cert, key = write_self_signed_cert(tmp_path)
    gateway = await listening_gateway(
        f"ssl:0:interface=127.0.0.1:certKey={cert}:privateKey={key}:extraCertChain={cert}")
    context = ssl.create_default_context(cafile=cert)

    def connect() -> ssl.SSLSocket:
        return context.wrap_socket(socket.create_connection(("127.0.0.1", gateway.port), timeout=10),
                                   server_hostname="localhost")

    assert (await talk(connect, PLAIN_GET)).startswith(b"HTTP/1.1 ")
    # The TLS handshake needs the reactor: the client does it in a thread.
    with await within(threads.deferToThread(connect), 15) as sock:
        assert type(socket_under(await upgraded_transport(gateway, sock))) is CorkedServer


#: Execs its arguments as systemd starts a socket-activated service: the socket
#: whose descriptor is argv[1] as fd 3, and LISTEN_PID naming the process itself.
AS_SYSTEMD = """\
import os, sys
fd = int(sys.argv[1])
os.dup2(fd, 3)
if fd != 3:
    os.close(fd)
os.execve(sys.argv[2], sys.argv[2:], {**os.environ, "LISTEN_PID": str(os.getpid())})
"""


@pytest.mark.parametrize("locator", ["name=web", "index=0"])
@pytest_twisted.ensureDeferred
async def test_systemd_socket_activation_of_the_command(nats_server, locator):
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen(16)
    port = listening.getsockname()[1]
    env = {**os.environ, "LISTEN_FDS": "1", "LISTEN_FDNAMES": "web"}
    process = GatewayProcess("--nats", nats_server.url, "--listen", f"systemd:domain=INET:{locator}",
                             prefix=(sys.executable, "-c", AS_SYSTEMD, str(listening.fileno())),
                             env=env, pass_fds=(listening.fileno(),))
    listening.close()  # the gateway's copy is the only one left
    try:
        assert await within(threads.deferToThread(process.wait_listening), 30) == port
        assert (await talk(tcp(port), PLAIN_GET)).startswith(b"HTTP/1.1 ")
        assert await within(threads.deferToThread(process.stop), 30) == 0
    finally:
        process.cleanup()


# --- haproxy: PROXY protocol ---------------------------------------------------


@pytest.mark.parametrize("header, remote_addr", [
    (proxy_v1("203.0.113.7", 56324), "203.0.113.7:56324"),
    (proxy_v2("2001:db8::7", 443), "[2001:db8::7]:443"),
])
@pytest.mark.parametrize("transport", ["http", "websocket"])
@pytest_twisted.ensureDeferred
async def test_services_see_the_address_of_the_proxy_header(listening_gateway, fake_service,
                                                            header, remote_addr, transport):
    gateway = await listening_gateway("haproxy:tcp:0:interface=127.0.0.1",
                                      header_auth="test.method", ws_header_auth="test.method")
    if transport == "http":
        assert await remote_addr_of_api_get(fake_service, tcp(gateway.port), header) == remote_addr
        return
    pending = defer.ensureDeferred(talk(tcp(gateway.port), header + UPGRADE))
    auth = (await fake_service.take("auth.test.method"))["auth.test.method"]
    assert auth.payload["remoteAddr"] == remote_addr
    auth.respond_result(None)
    assert (await pending).startswith(b"HTTP/1.1 101 ")


@pytest_twisted.ensureDeferred
async def test_proxied_connections_are_corked(listening_gateway):
    gateway = await listening_gateway("haproxy:tcp:0:interface=127.0.0.1")
    with tcp(gateway.port)() as sock:
        transport = await upgraded_transport(gateway, sock, proxy_v1("203.0.113.7", 1))
        assert isinstance(transport, ProxiedConnection)
        assert type(socket_under(transport)) is CorkedServer


@pytest_twisted.ensureDeferred
async def test_haproxy_over_ssl_reads_the_header_before_tls(listening_gateway, fake_service, tmp_path):
    """As a TCP load balancer sends it: the PROXY header in the clear, then the TLS handshake."""
    cert, key = write_self_signed_cert(tmp_path)
    gateway = await listening_gateway(f"haproxy:ssl:0:interface=127.0.0.1:certKey={cert}:privateKey={key}",
                                      header_auth="test.method")
    context = ssl.create_default_context(cafile=cert)

    def connect() -> ssl.SSLSocket:
        sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=10)
        sock.sendall(proxy_v1("198.51.100.9", 4242))
        return context.wrap_socket(sock, server_hostname="localhost")

    assert await remote_addr_of_api_get(fake_service, connect) == "198.51.100.9:4242"


@pytest.fixture
def debug_log():
    """The texts of log events while the test runs."""
    texts: list[str] = []

    def observe(event) -> None:
        if event.get("log_format"):
            from twisted.logger import formatEvent
            texts.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    yield texts
    globalLogPublisher.removeObserver(observe)


@pytest.mark.parametrize("data", [
    API_GET,  # no header at all: a client that is not the proxy
    b"PROXY TCP4 203.0.113.7 127.0.0.1 56324\r\n" + API_GET,  # a port missing
    b"PROXY TCP9 203.0.113.7 127.0.0.1 1 2\r\n" + API_GET,  # no such protocol
    b"PROXY " + b"9" * 200 + b"\r\n" + API_GET,  # longer than a v1 header can be
    V2_SIGNATURE + b"\x21\x21\x00\x04" + b"\x00" * 4 + API_GET,  # shorter than its addresses
    V2_SIGNATURE + b"\x51\x11\x00\x0c" + b"\x00" * 12 + API_GET,  # version 5
])
@pytest_twisted.ensureDeferred
async def test_a_connection_without_a_valid_proxy_header_is_closed_and_logged(
        listening_gateway, fake_service, debug_log, data):
    gateway = await listening_gateway("haproxy:tcp:0:interface=127.0.0.1", header_auth="test.method")
    assert await talk(tcp(gateway.port), data) == b""
    refusals = [text for text in debug_log if "did not start with a valid PROXY header" in text]
    assert len(refusals) == 1 and "127.0.0.1:" in refusals[0], debug_log
    fake_service.assert_no_request()


def dribbling(port: int, header: bytes):
    """Connects and sends ``header`` a byte at a time, each its own packet, as a slow proxy might."""
    def connect() -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for byte in header:
            sock.sendall(bytes([byte]))
            time.sleep(0.005)
        return sock
    return connect


@pytest.mark.parametrize("header, remote_addr", [
    (proxy_v1("203.0.113.7", 56324), "203.0.113.7:56324"),
    (proxy_v2("2001:db8::7", 443), "[2001:db8::7]:443"),
])
@pytest_twisted.ensureDeferred
async def test_a_proxy_header_in_pieces_is_waited_for(listening_gateway, fake_service, header, remote_addr):
    gateway = await listening_gateway("haproxy:tcp:0:interface=127.0.0.1", header_auth="test.method")
    assert await remote_addr_of_api_get(fake_service, dribbling(gateway.port, header)) == remote_addr


def proxy_v2_with_tlvs(block_length: int) -> bytes:
    """A v2 header from 192.0.2.1:1000 whose block after the fixed part is ``block_length`` bytes:
    IPv4 addresses, then one NOOP TLV (type 4) padding the rest."""
    addresses = socket.inet_aton("192.0.2.1") + socket.inet_aton("127.0.0.1") + struct.pack("!HH", 1000, 8080)
    padding = block_length - len(addresses) - 3
    block = addresses + struct.pack("!BH", 4, padding) + b"\x00" * padding
    return V2_SIGNATURE + b"\x21\x11" + struct.pack("!H", len(block)) + block


@pytest_twisted.ensureDeferred
async def test_a_proxy_v2_header_up_to_the_bound_is_taken(listening_gateway, fake_service):
    gateway = await listening_gateway("haproxy:tcp:0:interface=127.0.0.1", header_auth="test.method")
    header = proxy_v2_with_tlvs(MAX_PROXY_V2_BLOCK)
    assert await remote_addr_of_api_get(fake_service, tcp(gateway.port), header) == "192.0.2.1:1000"


@pytest.mark.parametrize("block_length", [MAX_PROXY_V2_BLOCK + 1, 65535])
@pytest_twisted.ensureDeferred
async def test_a_longer_proxy_v2_header_is_refused(listening_gateway, fake_service, debug_log, block_length):
    gateway = await listening_gateway("haproxy:tcp:0:interface=127.0.0.1", header_auth="test.method")
    # Only the fixed part: the gateway refuses before the rest arrives.
    assert await talk(tcp(gateway.port), proxy_v2_with_tlvs(block_length)[:16]) == b""
    assert any("its PROXY v2 header is longer than the gateway takes" in text for text in debug_log), debug_log
    fake_service.assert_no_request()


@pytest.mark.parametrize("sent", [b"", b"PROX", V2_SIGNATURE[:5], proxy_v1("203.0.113.7", 1)[:20]])
@pytest.mark.parametrize("tls", [False, True])
@pytest_twisted.ensureDeferred
async def test_a_silent_proxied_connection_is_closed_after_the_first_byte_timeout(
        listening_gateway, tmp_path, sent, tls):
    """The HTTP channel's first-byte bound covers the PROXY header too, whole or in part."""
    cert, key = write_self_signed_cert(tmp_path)
    inner = f"ssl:0:certKey={cert}:privateKey={key}" if tls else "tcp:0"
    gateway = await listening_gateway(f"haproxy:{inner}:interface=127.0.0.1", first_byte_timeout=300)

    def closed_by_gateway() -> bool:
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=20) as sock:
            sock.sendall(sent)
            try:
                # Blocks until the gateway closes, or fails at the socket timeout.
                return sock.recv(1) == b""
            except ConnectionResetError:  # TLS, before its handshake, has no orderly close
                return True

    assert await within(threads.deferToThread(closed_by_gateway), 30)


@pytest_twisted.ensureDeferred
async def test_a_proxy_header_on_a_plain_listener_is_bad_input(listening_gateway, fake_service):
    gateway = await listening_gateway("tcp:0:interface=127.0.0.1", header_auth="test.method")
    response = await talk(tcp(gateway.port), proxy_v1("203.0.113.7", 56324) + API_GET)
    assert response.startswith(b"HTTP/1.1 400 "), response
    fake_service.assert_no_request()


# --- ssl: minTLS= and dhParameters= --------------------------------------------

#: RFC 7919's ffdhe2048 group (``openssl genpkey -genparam -algorithm DH -pkeyopt group:ffdhe2048``):
#: standard parameters, so the test need not generate any (slow at 2048 bits).
FFDHE2048_PEM = """\
-----BEGIN DH PARAMETERS-----
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==
-----END DH PARAMETERS-----
"""
#: The one TLS 1.2 suite a DHE-only client offers: ephemeral finite-field Diffie-Hellman, RSA-signed.
DHE_CIPHER = "DHE-RSA-AES128-GCM-SHA256"


def tls_client(cert: str, *, minimum=None, maximum=None, ciphers: str | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=cert)
    if minimum is not None:
        context.minimum_version = minimum
    if maximum is not None:
        context.maximum_version = maximum
    if ciphers is not None:
        context.set_ciphers(ciphers)
    return context


async def tls_version_of_handshake(port: int, context: ssl.SSLContext, prefix: bytes = b"") -> str:
    """The TLS version a handshake with the gateway agreed (``prefix`` sent first, in the clear);
    raises ssl.SSLError when the gateway refuses it."""
    def handshake() -> str:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(prefix)
            with context.wrap_socket(sock, server_hostname="localhost") as tls:
                version = tls.version()
                assert version is not None
                return version
    return await within(threads.deferToThread(handshake), 15)


@pytest.mark.parametrize("proxied", [False, True])
@pytest_twisted.ensureDeferred
async def test_min_tls_1_3_refuses_a_tls_1_2_client(listening_gateway, tmp_path, proxied):
    cert, key = write_self_signed_cert(tmp_path)
    header = proxy_v1("198.51.100.9", 4242) if proxied else b""
    gateway = await listening_gateway(
        f"{'haproxy:' if proxied else ''}ssl:0:interface=127.0.0.1:certKey={cert}:privateKey={key}:minTLS=1.3")
    with pytest.raises(ssl.SSLError):
        await tls_version_of_handshake(gateway.port, tls_client(cert, maximum=ssl.TLSVersion.TLSv1_2), header)
    client = tls_client(cert, minimum=ssl.TLSVersion.TLSv1_3)
    assert await tls_version_of_handshake(gateway.port, client, header) == "TLSv1.3"


@pytest_twisted.ensureDeferred
async def test_min_tls_1_2_takes_a_tls_1_2_client(listening_gateway, tmp_path):
    cert, key = write_self_signed_cert(tmp_path)
    gateway = await listening_gateway(f"ssl:0:interface=127.0.0.1:minTLS=1.2:certKey={cert}:privateKey={key}")
    client = tls_client(cert, maximum=ssl.TLSVersion.TLSv1_2)
    assert await tls_version_of_handshake(gateway.port, client) == "TLSv1.2"


@pytest.mark.parametrize("minimum, problem", [
    ("abc", "minTLS must be 1.2 or 1.3, not 'abc'"),
    ("", "minTLS must be 1.2 or 1.3, not ''"),
    ("1.1", "minTLS must be 1.2 or 1.3, not '1.1'"),
    ("1.0", "minTLS must be 1.2 or 1.3, not '1.0'"),
    ("1.3:minTLS=1.2", "minTLS is given 2 times"),
    ("1.3:sslmethod=TLSv1_2_METHOD", "minTLS cannot be combined with sslmethod"),
])
def test_a_malformed_min_tls_is_one_config_error(tmp_path, minimum, problem):
    cert, key = write_self_signed_cert(tmp_path)
    description = f"ssl:0:certKey={cert}:privateKey={key}:minTLS={minimum}"
    with pytest.raises(ConfigError, match=f"^invalid listen {re.escape(json.dumps(description))}: "
                                          f"{re.escape(problem)}"):
        GatewayService(Config(listen=[description]))


@pytest.mark.parametrize("description", ["tcp:0:minTLS=1.3", "haproxy:tcp:0:minTLS=1.3", "unix:/run/x.sock:minTLS=1.2"])
def test_min_tls_on_an_endpoint_without_tls_is_refused(description):
    with pytest.raises(ConfigError, match="minTLS applies to ssl: endpoints only"):
        GatewayService(Config(listen=[description]))


def test_min_tls_keeps_every_other_setting_of_twisteds_ssl_parser(tmp_path):
    """with_tls_minimum builds the settings again: Twisted's ``ssl:`` must set nothing it leaves out."""
    cert, key = write_self_signed_cert(tmp_path, rsa_key=True)
    dh_path = tmp_path / "dh.pem"
    dh_path.write_text(FFDHE2048_PEM)

    class Recorder:
        def listenSSL(self, port, factory, contextFactory, **kwargs):
            self.options = contextFactory

    recorder = Recorder()
    endpoint = serverFromString(
        recorder, f"ssl:0:certKey={cert}:privateKey={key}:extraCertChain={cert}:dhParameters={dh_path}")
    endpoint.listen(None)
    rebuilt = with_tls_minimum(recorder.options, TLSVersion.TLSv1_3)

    def public(options) -> dict:
        return {name: value for name, value in vars(options).items() if not name.startswith("_")}

    assert public(rebuilt) == public(recorder.options)
    assert len(rebuilt.extraCertChain) == 1 and rebuilt.dhParameters is not None


@pytest_twisted.ensureDeferred
async def test_dh_parameters_give_dhe_cipher_suites(listening_gateway, tmp_path):
    """Without DH parameters a client that offers only DHE finds no suite; with them it agrees on one."""
    cert, key = write_self_signed_cert(tmp_path, rsa_key=True)
    dh_path = tmp_path / "dh.pem"
    dh_path.write_text(FFDHE2048_PEM)
    client = tls_client(cert, maximum=ssl.TLSVersion.TLSv1_2, ciphers=DHE_CIPHER)
    gateway = await listening_gateway(
        f"ssl:0:interface=127.0.0.1:certKey={cert}:privateKey={key}",
        f"ssl:0:interface=127.0.0.1:certKey={cert}:privateKey={key}:dhParameters={dh_path}")
    plain, with_dh = gateway.listeners
    with pytest.raises(ssl.SSLError):
        await tls_version_of_handshake(plain.port.getHost().port, client)

    def cipher_of_handshake() -> str:
        with socket.create_connection(("127.0.0.1", with_dh.port.getHost().port), timeout=10) as sock:
            with client.wrap_socket(sock, server_hostname="localhost") as tls:
                cipher = tls.cipher()
                assert cipher is not None
                return cipher[0]

    assert await within(threads.deferToThread(cipher_of_handshake), 15) == DHE_CIPHER


@pytest.mark.parametrize("content, problem", [
    (None, "cannot read TLS DH parameters file {path}: No such file or directory"),
    ("not parameters", "DH parameters file {path} holds no PEM DH parameters"),
])
def test_a_bad_dh_parameters_file_is_a_config_error_before_any_client(tmp_path, content, problem):
    cert, key = write_self_signed_cert(tmp_path)
    path = tmp_path / "dh.pem"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=re.escape(problem.format(path=path))):
        GatewayService(Config(listen=[f"haproxy:ssl:0:certKey={cert}:privateKey={key}:dhParameters={path}"]))



# --- closed connections --------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_closed_connection_behind_a_proxy_header_is_freed_without_a_collection(listening_gateway):
    """As over plain TCP (tests/test_reference_cycles.py): a closed WebSocket connection's protocol
    and the transports under it (the PROXY header's wrapper, the socket's) are freed by reference
    counting alone. Over ``ssl:`` they are not: pyOpenSSL's Connection is itself in a cycle and
    holds Twisted's TLS wrapper, which holds the protocol as its producer."""
    gateway = await listening_gateway("haproxy:tcp:0:interface=127.0.0.1")
    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=10)
    transport = await upgraded_transport(gateway, sock, proxy_v1("203.0.113.7", 56324))
    (protocol,) = gateway.clients.protocols
    refs = [weakref.ref(protocol), weakref.ref(transport), weakref.ref(socket_under(transport))]
    del protocol, transport
    gc.collect()
    gc.disable()
    try:
        await within(threads.deferToThread(sock.close), 15)
        await eventually(lambda: not gateway.clients.protocols)
        try:
            await eventually(lambda: all(ref() is None for ref in refs))
        except AssertionError:
            raise AssertionError(f"still alive without a collection: {[ref() for ref in refs]}") from None
    finally:
        gc.enable()
