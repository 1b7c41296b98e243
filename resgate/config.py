"""The gateway's settings: Resgate's defaults, its JSON file, and the flags.

Settings are layered as Resgate layers them: defaults, then the JSON file
named by ``--config`` (same keys as Resgate's, so an existing file works),
then the flags actually given. A ``Config`` validates itself on creation and
computes what Resgate's ``prepare`` computes, so code holding one can trust
it. Every problem is a ``ConfigError`` whose message is one line naming the
setting and where its value came from.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import json
import os
import re
import string
from collections.abc import Mapping
from dataclasses import InitVar, dataclass, field
from typing import Any, NamedTuple, TextIO
from urllib.parse import urlsplit

from resgate.codec import is_valid_rid, is_valid_rid_part, json_type_name
from resgate.endpoints import endpoint_kind, tcp_port


DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
DEFAULT_REQUEST_TIMEOUT = 3000  # milliseconds
DEFAULT_BUFFER_SIZE = 8192
DEFAULT_ADDR = "0.0.0.0"
DEFAULT_PORT = 8080
DEFAULT_METRICS_PORT = 0  # metrics disabled
DEFAULT_WS_PATH = "/"
DEFAULT_API_PATH = "/api"
DEFAULT_API_ENCODING = "json"
DEFAULT_ALLOW_ORIGIN = "*"
#: Gateway processes sharing the listening port (ours, not Resgate's).
DEFAULT_WORKERS = 1
#: The most ``--workers``: a sanity bound, far above any machine's core count.
MAX_WORKERS = 1024
#: Bytes a WebSocket client may leave unread beyond what the sockets buffer
#: before it is cut off (``wsMaxUnread``, ours: Resgate has no such bound).
DEFAULT_WS_MAX_UNREAD = 4 * 1024 * 1024
#: Less would cut off a client whose socket is only briefly full, for a
#: single large resource; more would let a few clients that do not read
#: hold gigabytes of the gateway's memory.
MIN_WS_MAX_UNREAD = 64 * 1024
MAX_WS_MAX_UNREAD = 1024 * 1024 * 1024
#: Seconds a WebSocket client's backlog may take to drain before the client
#: is cut off, however few bytes it holds (``wsDrainTimeout``, ours). A client
#: on a 1 Mbit/s link takes in 3.75 MB in 30 s, nearly all of the default
#: ``wsMaxUnread``: one that has not caught up by then serves stale data.
DEFAULT_WS_DRAIN_TIMEOUT = 30
#: Less would cut off a healthy client for a moment's congestion; more than
#: an hour would let a client that barely reads hold its backlog indefinitely.
MIN_WS_DRAIN_TIMEOUT = 1
MAX_WS_DRAIN_TIMEOUT = 3600
#: The longest wait between attempts to reconnect to NATS, in milliseconds
#: (``reconnectMaxDelay``, ours: Resgate exits when it loses NATS).
#: Half a second keeps "current data within a second of NATS accepting
#: again" with room for the connect, self-test and inbox subscription.
DEFAULT_RECONNECT_MAX_DELAY = 500
#: Less would retry a down server many times a second for no gain; more than
#: a minute would leave a gateway dark long after NATS is back.
MIN_RECONNECT_MAX_DELAY = 50
MAX_RECONNECT_MAX_DELAY = 60_000
#: The most ``listen`` endpoints, and the longest description of one: sanity
#: bounds far above any deployment (a description holds at most a few paths).
MAX_LISTEN_ENDPOINTS = 32
MAX_LISTEN_DESCRIPTION = 8192
#: Settings an endpoint description of ``listen`` replaces, so that neither may be set with it.
LISTEN_REPLACES = ("addr", "port", "tls", "certFile", "keyFile")
#: Endpoint kinds whose socket cannot be shared by ``--workers`` processes with SO_REUSEPORT.
UNSHARED_ENDPOINT_KINDS = ("unix", "systemd")
#: How long an HTTP connection may take over each part of a request, in
#: milliseconds (ours: Resgate, Go's http.Server without timeouts, bounds
#: none). From connect to the first byte: enough for a TLS handshake over a
#: slow mobile link, short enough that silent connections do not pile up.
DEFAULT_FIRST_BYTE_TIMEOUT = 10_000
#: From a request's first byte to the end of its head (request line, headers).
DEFAULT_HEAD_TIMEOUT = 30_000
#: From the end of the head to the end of the body: nginx's
#: client_body_timeout; a body of the 1 MiB limit needs 17 KiB/s.
DEFAULT_BODY_TIMEOUT = 60_000
#: From the end of a response to the next request's first byte: nginx's
#: keepalive_timeout, longer than the 60 s after which proxies (nginx, AWS
#: load balancers) drop idle connections to a backend, so that it is they
#: who close, never the gateway under a request they are sending.
DEFAULT_KEEP_ALIVE_TIMEOUT = 75_000
#: The range of every HTTP time bound, in milliseconds.
MIN_HTTP_TIMEOUT = 100
MAX_HTTP_TIMEOUT = 3_600_000
#: Client connections one gateway process takes at once (``maxConns``,
#: ours): 0 derives the cap from the process's open-file limit
#: (``resgate.admission.default_max_connections``).
DEFAULT_MAX_CONNS = 0
#: Client connections from one IP address (``maxConnsPerAddr``, ours): 0, no cap.
DEFAULT_MAX_CONNS_PER_ADDR = 0
#: Linux's default ceiling on one process's open files (fs.nr_open): no
#: process takes more connections than that.
MAX_CONNS = 1024 * 1024
#: Distinct resources one client connection may hold, directly or through
#: references (``maxResources``, ours). A large app holds a few thousand on
#: one connection; each costs the gateway about a kilobyte.
DEFAULT_MAX_RESOURCES = 20_000
MAX_RESOURCES = 10_000_000

#: Encodings of resources served over HTTP, compared case-insensitively.
API_ENCODINGS = ("json", "jsonflat")
#: Methods always allowed over HTTP; PUT, DELETE and PATCH join when mapped.
BASE_ALLOW_METHODS = "GET, HEAD, OPTIONS, POST"
MAX_PORT = 65535
#: The largest integer setting: Go's int, which Resgate parses them into.
MAX_INT = 2**63 - 1
#: A requestTimeout this small is taken as seconds (Resgate's pre-1.3 unit).
DEPRECATED_SECONDS_LIMIT = 10
#: The port of a nats:// URL that names none.
DEFAULT_NATS_PORT = 4222
#: No real configuration comes near this; a larger file is refused unread.
MAX_CONFIG_FILE_SIZE = 1024 * 1024
#: Resgate creates a missing configuration file with this mode (umask applies).
CONFIG_FILE_MODE = 0o664

# Longest rendering of a bad value inside an error message.
_SHOWN_VALUE_LENGTH = 80


class ConfigError(Exception):
    """An unusable setting or configuration file; ``str()`` is one line."""


class ResourceMethod(NamedTuple):
    """A resource method such as ``auth.user.login``: resource ID and method."""

    rid: str
    method: str


class SettingKind(enum.Enum):
    STRING = "a string"
    OPTIONAL_STRING = "a string or null"
    INTEGER = "an integer"
    PORT = f"an integer from 0 to {MAX_PORT}"
    BOOLEAN = "true or false"
    STRING_LIST = "a list of strings"


@dataclass(frozen=True)
class _Setting:
    key: str  # the JSON key in Resgate's configuration file
    attr: str  # the Config attribute
    kind: SettingKind
    flag: str | None = None  # the long option that overrides it
    zero_is_default: bool = False  # Resgate's SetDefault replaces 0 or "" with the default
    # Ours, not Resgate's: a created file holds it only when it is not the default.
    extension: bool = False


# In the order of Resgate's configuration structs, which is the file's order.
SETTINGS: tuple[_Setting, ...] = (
    _Setting("natsUrl", "nats_url", SettingKind.STRING, "nats", zero_is_default=True),
    _Setting("natsCreds", "nats_creds", SettingKind.STRING, "creds"),
    _Setting("natsCert", "nats_cert", SettingKind.STRING, "natscert"),
    _Setting("natsKey", "nats_key", SettingKind.STRING, "natskey"),
    _Setting("natsRootCAs", "nats_root_cas", SettingKind.STRING_LIST, "natsrootca"),
    _Setting(
        "requestTimeout", "request_timeout", SettingKind.INTEGER, "reqtimeout", zero_is_default=True
    ),
    _Setting("bufferSize", "buffer_size", SettingKind.INTEGER, zero_is_default=True),
    _Setting("debug", "debug", SettingKind.BOOLEAN, "debug"),
    _Setting("trace", "trace", SettingKind.BOOLEAN, "trace"),
    _Setting("addr", "addr", SettingKind.STRING, "addr"),
    _Setting("port", "port", SettingKind.PORT, "port", zero_is_default=True),
    _Setting("wsPath", "ws_path", SettingKind.STRING, "wspath", zero_is_default=True),
    _Setting("apiPath", "api_path", SettingKind.STRING, "apipath", zero_is_default=True),
    _Setting("metricsPort", "metrics_port", SettingKind.PORT, "metricsport"),
    _Setting("apiEncoding", "api_encoding", SettingKind.STRING, "apiencoding", zero_is_default=True),
    _Setting("headerAuth", "header_auth", SettingKind.OPTIONAL_STRING, "headauth"),
    _Setting("wsHeaderAuth", "ws_header_auth", SettingKind.OPTIONAL_STRING, "wsheadauth"),
    _Setting("allowOrigin", "allow_origin", SettingKind.STRING, "alloworigin"),
    _Setting("putMethod", "put_method", SettingKind.OPTIONAL_STRING, "putmethod"),
    _Setting("deleteMethod", "delete_method", SettingKind.OPTIONAL_STRING, "deletemethod"),
    _Setting("patchMethod", "patch_method", SettingKind.OPTIONAL_STRING, "patchmethod"),
    _Setting("tls", "tls", SettingKind.BOOLEAN, "tls"),
    _Setting("certFile", "tls_cert", SettingKind.STRING, "tlscert"),
    _Setting("keyFile", "tls_key", SettingKind.STRING, "tlskey"),
    _Setting("wsCompression", "ws_compression", SettingKind.BOOLEAN, "wscompression"),
    _Setting("resetThrottle", "reset_throttle", SettingKind.INTEGER, "resetthrottle"),
    _Setting("referenceThrottle", "reference_throttle", SettingKind.INTEGER, "referencethrottle"),
    _Setting("wsMaxUnread", "ws_max_unread", SettingKind.INTEGER, "wsmaxunread", zero_is_default=True,
             extension=True),
    _Setting("wsDrainTimeout", "ws_drain_timeout", SettingKind.INTEGER, "wsdraintimeout", zero_is_default=True,
             extension=True),
    _Setting("reconnectMaxDelay", "reconnect_max_delay", SettingKind.INTEGER, "reconnectmaxdelay",
             zero_is_default=True, extension=True),
    _Setting("listen", "listen", SettingKind.STRING_LIST, "listen", extension=True),
    _Setting("firstByteTimeout", "first_byte_timeout", SettingKind.INTEGER, "firstbytetimeout",
             zero_is_default=True, extension=True),
    _Setting("headTimeout", "head_timeout", SettingKind.INTEGER, "headtimeout",
             zero_is_default=True, extension=True),
    _Setting("bodyTimeout", "body_timeout", SettingKind.INTEGER, "bodytimeout",
             zero_is_default=True, extension=True),
    _Setting("keepAliveTimeout", "keep_alive_timeout", SettingKind.INTEGER, "keepalivetimeout",
             zero_is_default=True, extension=True),
    _Setting("refuseNullOrigin", "refuse_null_origin", SettingKind.BOOLEAN, "refusenullorigin",
             extension=True),
    _Setting("maxConns", "max_conns", SettingKind.INTEGER, "maxconns", extension=True),
    _Setting("maxConnsPerAddr", "max_conns_per_addr", SettingKind.INTEGER, "maxconnsperaddr", extension=True),
    _Setting("maxResources", "max_resources", SettingKind.INTEGER, "maxresources", zero_is_default=True,
             extension=True),
)

#: The JSON keys of the HTTP time bounds.
HTTP_TIMEOUT_KEYS = ("firstByteTimeout", "headTimeout", "bodyTimeout", "keepAliveTimeout")

SETTINGS_BY_KEY = {setting.key: setting for setting in SETTINGS}
# Go's JSON decoder matches keys case-insensitively, so Resgate does too.
SETTINGS_BY_FOLDED_KEY = {setting.key.lower(): setting for setting in SETTINGS}

_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
# What Go's url.Parse leaves as a bare origin: scheme, host, optional port, and
# no user, path, query or fragment. Origins are lowercased before matching.
_ORIGIN = re.compile(
    r"[a-z][a-z0-9+.\-]*://(?:\[[0-9a-f:.]+\]|[^\x00-\x20\x7f/?#@\[\]\\^`{|}:]+)(?::[0-9]*)?"
)


@dataclass
class Config:
    """Every setting of the gateway, validated on creation.

    Field defaults are Resgate's. Creating a Config (directly, with
    ``dataclasses.replace`` or with ``resgate.options.config_from_options``)
    validates it, appends the slash ``api_path`` needs, and fills in the derived attributes:
    ``header_auth_method``, ``ws_header_auth_method``, ``allowed_origins``,
    ``allow_methods``, ``listen_host`` and ``embedded_nats_address``. Treat
    it as read-only afterwards. ``port=0`` asks for any free port, which only
    direct creation allows: in the file and flags, 0 means the default.
    """

    nats_url: str = DEFAULT_NATS_URL
    nats_creds: str = ""
    nats_cert: str = ""
    nats_key: str = ""
    nats_root_cas: list[str] = field(default_factory=list)
    request_timeout: int = DEFAULT_REQUEST_TIMEOUT
    buffer_size: int = DEFAULT_BUFFER_SIZE
    debug: bool = False
    trace: bool = False
    addr: str = DEFAULT_ADDR
    port: int = DEFAULT_PORT
    metrics_port: int = DEFAULT_METRICS_PORT
    ws_path: str = DEFAULT_WS_PATH
    api_path: str = DEFAULT_API_PATH
    header_auth: str | None = None
    ws_header_auth: str | None = None
    api_encoding: str = DEFAULT_API_ENCODING
    put_method: str | None = None
    delete_method: str | None = None
    patch_method: str | None = None
    ws_compression: bool = False
    reset_throttle: int = 0
    reference_throttle: int = 0
    ws_max_unread: int = DEFAULT_WS_MAX_UNREAD
    ws_drain_timeout: int = DEFAULT_WS_DRAIN_TIMEOUT
    reconnect_max_delay: int = DEFAULT_RECONNECT_MAX_DELAY
    first_byte_timeout: int = DEFAULT_FIRST_BYTE_TIMEOUT
    head_timeout: int = DEFAULT_HEAD_TIMEOUT
    body_timeout: int = DEFAULT_BODY_TIMEOUT
    keep_alive_timeout: int = DEFAULT_KEEP_ALIVE_TIMEOUT
    #: Refuse ``Origin: null`` as a disallowed origin (ours; Resgate lets it pass).
    refuse_null_origin: bool = False
    max_conns: int = DEFAULT_MAX_CONNS
    max_conns_per_addr: int = DEFAULT_MAX_CONNS_PER_ADDR
    max_resources: int = DEFAULT_MAX_RESOURCES
    tls: bool = False
    tls_cert: str = ""
    tls_key: str = ""
    allow_origin: str = DEFAULT_ALLOW_ORIGIN
    #: Twisted server endpoint descriptions listened on instead of addr and port (ours).
    listen: list[str] = field(default_factory=list)
    embed_nats: bool = False
    #: Gateway processes behind the one port (``--workers``; never in the file).
    workers: int = DEFAULT_WORKERS
    #: Where each value came from, by JSON key (" in FILE", " from --FLAG"),
    #: so that error messages can say so.
    origins: InitVar[Mapping[str, str] | None] = None

    header_auth_method: ResourceMethod | None = field(init=False, repr=False, compare=False)
    ws_header_auth_method: ResourceMethod | None = field(init=False, repr=False, compare=False)
    #: Lowercased and sorted; ``["*"]`` allows every origin.
    allowed_origins: list[str] = field(init=False, repr=False, compare=False)
    #: The Access-Control-Allow-Methods value.
    allow_methods: str = field(init=False, repr=False, compare=False)
    #: The IP address to listen on in canonical form, "" for every interface.
    listen_host: str = field(init=False, repr=False, compare=False)
    #: (host, port) for the embedded nats-server; None unless ``embed_nats``.
    embedded_nats_address: tuple[str, int] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self, origins: Mapping[str, str] | None) -> None:
        origins = origins or {}

        def invalid(key: str, reason: str) -> ConfigError:
            value = getattr(self, SETTINGS_BY_KEY[key].attr)
            return ConfigError(f"invalid {key} {_show(value)}{origins.get(key, '')}: {reason}")

        for setting in SETTINGS:
            problem = _kind_problem(getattr(self, setting.attr), setting.kind)
            if problem:
                raise invalid(setting.key, problem)
        self._check_listen(origins)

        if self.api_encoding.lower() not in API_ENCODINGS:
            raise invalid("apiEncoding", f"must be {' or '.join(API_ENCODINGS)}")
        if not MIN_WS_MAX_UNREAD <= self.ws_max_unread <= MAX_WS_MAX_UNREAD:
            raise invalid(
                "wsMaxUnread",
                f"must be from {MIN_WS_MAX_UNREAD} (64 KiB) to {MAX_WS_MAX_UNREAD} (1 GiB) bytes",
            )
        if not MIN_WS_DRAIN_TIMEOUT <= self.ws_drain_timeout <= MAX_WS_DRAIN_TIMEOUT:
            raise invalid(
                "wsDrainTimeout",
                f"must be from {MIN_WS_DRAIN_TIMEOUT} to {MAX_WS_DRAIN_TIMEOUT} seconds",
            )
        if not MIN_RECONNECT_MAX_DELAY <= self.reconnect_max_delay <= MAX_RECONNECT_MAX_DELAY:
            raise invalid(
                "reconnectMaxDelay",
                f"must be from {MIN_RECONNECT_MAX_DELAY} to {MAX_RECONNECT_MAX_DELAY} milliseconds",
            )
        for key in HTTP_TIMEOUT_KEYS:
            if not MIN_HTTP_TIMEOUT <= getattr(self, SETTINGS_BY_KEY[key].attr) <= MAX_HTTP_TIMEOUT:
                raise invalid(key, f"must be from {MIN_HTTP_TIMEOUT} to {MAX_HTTP_TIMEOUT} milliseconds")
        for key, value in (("maxConns", self.max_conns), ("maxConnsPerAddr", self.max_conns_per_addr)):
            if value > MAX_CONNS:
                raise invalid(key, f"must be from 0 to {MAX_CONNS} connections")
        if not 1 <= self.max_resources <= MAX_RESOURCES:
            raise invalid("maxResources", f"must be from 1 to {MAX_RESOURCES} resources")
        if self.metrics_port and not self.listen and self.metrics_port == self.port:
            raise invalid("metricsPort", f"must differ from port {self.port}")

        listen_host = _canonical_ip(self.addr) if self.addr else ""
        if listen_host is None:
            raise invalid("addr", "must be empty or an IPv4 or IPv6 address")
        self.listen_host = listen_host

        self.header_auth_method = _resource_method(self.header_auth)
        if self.header_auth is not None and self.header_auth_method is None:
            raise invalid("headerAuth", "must be a resource method: <resource ID>.<method>")
        self.ws_header_auth_method = _resource_method(self.ws_header_auth)
        if self.ws_header_auth is not None and self.ws_header_auth_method is None:
            raise invalid("wsHeaderAuth", "must be a resource method: <resource ID>.<method>")

        try:
            self.allowed_origins = _allowed_origins(self.allow_origin)
        except ValueError as e:
            raise invalid(
                "allowOrigin", f"{e}; use *, or <scheme>://<host>[:<port>] origins separated by ;"
            ) from None

        methods = [BASE_ALLOW_METHODS]
        for key, http_method, name in (
            ("putMethod", "PUT", self.put_method),
            ("deleteMethod", "DELETE", self.delete_method),
            ("patchMethod", "PATCH", self.patch_method),
        ):
            if name is not None:
                if not is_valid_rid_part(name):
                    raise invalid(key, "must be a call method name, without dots or wildcards")
                methods.append(http_method)
        self.allow_methods = ", ".join(methods)

        if self.tls:
            for key, path, flag in (
                ("certFile", self.tls_cert, "tlscert"),
                ("keyFile", self.tls_key, "tlskey"),
            ):
                if not path:
                    raise ConfigError(
                        f"tls is enabled{origins.get('tls', '')} but {key} is not set:"
                        f" set {key} or --{flag}"
                    )
        if bool(self.nats_cert) != bool(self.nats_key):
            given, missing, flag = (
                ("natsCert", "natsKey", "natskey")
                if self.nats_cert
                else ("natsKey", "natsCert", "natscert")
            )
            raise ConfigError(
                f"{given} is set{origins.get(given, '')} but {missing} is not:"
                f" set {missing} or --{flag}"
            )

        self.embedded_nats_address = None
        if self.embed_nats:
            self.embedded_nats_address = _loopback_nats_address(self.nats_url)
            if self.embedded_nats_address is None:
                raise invalid(
                    "natsUrl", "--embed-nats needs one nats://<loopback host>:<port> URL"
                )

        if type(self.workers) is not int or not 1 <= self.workers <= MAX_WORKERS:
            raise ConfigError(
                f"invalid workers {_show(self.workers)}{origins.get('workers', '')}:"
                f" must be an integer from 1 to {MAX_WORKERS}"
            )

        if not self.ws_path:
            self.ws_path = "/"
        if not self.api_path.endswith("/"):
            self.api_path += "/"

    def _check_listen(self, origins: Mapping[str, str]) -> None:
        """Refuse endpoint descriptions that are empty, too many or too long, mixed with
        addr/port/TLS, or that ``--workers`` cannot share; Twisted parses them when listening."""
        if not self.listen:
            return
        where = origins.get("listen", "")
        if len(self.listen) > MAX_LISTEN_ENDPOINTS:
            raise ConfigError(f"invalid listen{where}: at most {MAX_LISTEN_ENDPOINTS} endpoints")
        for description in self.listen:
            if not description or len(description) > MAX_LISTEN_DESCRIPTION:
                raise ConfigError(f"invalid listen {_show(description)}{where}: an endpoint description"
                                  f" must be 1 to {MAX_LISTEN_DESCRIPTION} characters")
        for key in LISTEN_REPLACES:
            attr = SETTINGS_BY_KEY[key].attr
            origin = origins.get(key, "")
            if getattr(self, attr) != _DEFAULTS[attr] or origin.startswith(" from --"):
                raise ConfigError(
                    f"listen{where} cannot be combined with {key}{origin}: an endpoint description"
                    " names its own address, port and TLS (tcp:, ssl:, unix:, systemd:, haproxy:)"
                )
        if type(self.workers) is int and self.workers > 1:
            for description in self.listen:
                problem = _unshareable(description)
                if problem is not None:
                    raise ConfigError(f"listen {_show(description)}{where} cannot be shared by --workers"
                                      f" {self.workers}: {problem}")

    def origin_allowed(self, origin: str | None) -> bool:
        """Whether a request with this Origin header (None: without one) may proceed.

        Resgate's check: any origin with ``*``; no Origin or "null" always
        passes, "null" unless ``refuse_null_origin``, which refuses it in
        any case and within a list, whatever ``allowOrigin`` says.
        Otherwise the origin must be one of ``allowOrigin``'s, compared
        ASCII case-insensitively.
        """
        if origin is None:
            return True
        if self.refuse_null_origin and names_null_origin(origin):
            return False
        if self.allowed_origins == ["*"] or origin == "null":
            return True
        return origin.translate(_ASCII_LOWER) in self.allowed_origins

    @property
    def scheme(self) -> str:
        """``https`` with TLS, else ``http``: the scheme clients connect with."""
        return "https" if self.tls else "http"

    def to_json(self) -> dict[str, Any]:
        """The settings under Resgate's JSON keys, in Resgate's order.

        Settings of ours follow, only those that are not at their default:
        a file of defaults stays the one Resgate writes.
        """
        document = {
            setting.key: getattr(self, setting.attr)
            for setting in SETTINGS
            if not setting.extension or getattr(self, setting.attr) != _DEFAULTS[setting.attr]
        }
        document["natsRootCAs"] = list(self.nats_root_cas)
        return document


_DEFAULTS = {
    f.name: f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    for f in dataclasses.fields(Config)
    if f.init
}


def _unshareable(description: str) -> str | None:
    """Why ``--workers`` processes cannot all listen on an endpoint, or None when they can."""
    kind = endpoint_kind(description)
    if kind in UNSHARED_ENDPOINT_KINDS:
        return f"a {kind}: socket has no SO_REUSEPORT; run one process per socket or listen on tcp: or ssl:"
    if tcp_port(description) == 0:
        return "with port 0 each process would listen on a port of its own; name the port"
    return None


def names_null_origin(origin: str) -> bool:
    """Whether an Origin value is the opaque origin "null" (a sandboxed or ``file://`` page).

    Browsers send exactly ``null``; ``NULL`` and lists such as ``null, null``
    (what duplicate Origin headers are joined into) count too, so a
    variant cannot slip past a refusal.
    """
    return any(part.strip(" \t").translate(_ASCII_LOWER) == "null" for part in origin.split(","))


def _show(value: object) -> str:
    """A value as JSON on one short line, for error messages."""
    try:
        shown = json.dumps(value)
    except (TypeError, ValueError):
        shown = repr(value)
    if len(shown) > _SHOWN_VALUE_LENGTH:
        shown = shown[: _SHOWN_VALUE_LENGTH - 3] + "..."
    return shown


def _kind_problem(value: object, kind: SettingKind) -> str | None:
    """Why ``value`` cannot be a setting of ``kind``, or None when it can."""
    if kind is SettingKind.STRING:
        ok = isinstance(value, str)
    elif kind is SettingKind.OPTIONAL_STRING:
        ok = value is None or isinstance(value, str)
    elif kind is SettingKind.BOOLEAN:
        ok = isinstance(value, bool)
    elif kind is SettingKind.STRING_LIST:
        ok = isinstance(value, list) and all(isinstance(item, str) for item in value)
    else:
        # bool is an int in Python but not in JSON or Go.
        if type(value) is not int:
            return f"must be {kind.value}"
        if kind is SettingKind.PORT and not 0 <= value <= MAX_PORT:
            return f"must be {kind.value}"
        if value < 0:
            return "must not be negative"
        if value > MAX_INT:
            return f"must be at most {MAX_INT}"
        return None
    return None if ok else f"must be {kind.value}"


def is_zero(value: object, kind: SettingKind) -> bool:
    if kind in (SettingKind.INTEGER, SettingKind.PORT):
        return type(value) is int and value == 0
    return value == ""


def _canonical_ip(addr: str) -> str | None:
    """The IP literal ``addr`` in canonical form, or None if it is none.

    IPv4-mapped IPv6 becomes IPv4 and zones are refused, as Go's ParseIP does.
    """
    if "%" in addr:
        return None
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def _resource_method(value: str | None) -> ResourceMethod | None:
    """``rid.method`` split at its last dot, or None unless it is one."""
    if value is None or not is_valid_rid(value, False):
        return None
    rid, dot, method = value.rpartition(".")
    return ResourceMethod(rid, method) if dot else None


def _allowed_origins(setting: str) -> list[str]:
    """The origins of an allowOrigin setting, lowercased and sorted.

    Raises ValueError saying what is wrong with it.
    """
    origins = setting.translate(_ASCII_LOWER).split(";")
    for origin in origins:
        if origin == "*":
            if len(origins) > 1:
                raise ValueError("* must not be combined with other origins")
        elif not origin:
            raise ValueError("an origin is empty")
        elif not _ORIGIN.fullmatch(origin):
            raise ValueError(f"{_show(origin)} is not a bare origin")
    return sorted(origins)


def _loopback_nats_address(url: str) -> tuple[str, int] | None:
    """(host, port) of a single nats:// URL on a loopback host, else None."""
    if "," in url:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port or DEFAULT_NATS_PORT
    except ValueError:
        return None
    host = parts.hostname
    if parts.scheme != "nats" or host is None or parts.path not in ("", "/"):
        return None
    if host != "localhost":
        try:
            if not ipaddress.ip_address(host).is_loopback:
                return None
        except ValueError:
            return None
    return host, port


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON value")


def _parse_int(digits: str) -> int:
    # Python refuses to convert huge digit strings with a message about its own
    # internals; no setting needs more digits than MAX_INT has.
    if len(digits.lstrip("-")) > len(str(MAX_INT)):
        raise ValueError(f"number {digits[:20]}... has too many digits")
    return int(digits)


def read_config_file(path: str) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None if there is no such file."""
    try:
        with open(path, "rb") as file:
            raw = file.read(MAX_CONFIG_FILE_SIZE + 1)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror or e}") from None
    if len(raw) > MAX_CONFIG_FILE_SIZE:
        raise ConfigError(f"config file {path} is larger than {MAX_CONFIG_FILE_SIZE} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"config file {path} is not UTF-8: byte 0x{raw[e.start]:02x} at offset {e.start}"
        ) from None
    try:
        document = json.loads(text, parse_constant=_reject_constant, parse_int=_parse_int)
    except json.JSONDecodeError as e:
        raise ConfigError(
            f"cannot parse config file {path}: {e.msg} at line {e.lineno}, column {e.colno}"
        ) from None
    except ValueError as e:
        raise ConfigError(f"cannot parse config file {path}: {e}") from None
    except RecursionError:
        raise ConfigError(f"cannot parse config file {path}: JSON nested too deeply") from None
    if document is None:
        return {}  # Go decodes a bare null into an untouched struct
    if not isinstance(document, dict):
        raise ConfigError(
            f"config file {path} must hold a JSON object, not {json_type_name(document)}"
        )
    return document


def write_config_file(path: str, document: dict[str, Any], stderr: TextIO) -> None:
    """Create ``path`` holding ``document`` as Resgate writes it: tab-indented JSON.

    Resgate starts even when it cannot write the file; so do we, with a warning.
    """
    text = json.dumps(document, indent="\t", ensure_ascii=False)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, CONFIG_FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
    except OSError as e:
        print(f"warning: cannot write config file {path}: {e.strerror or e}", file=stderr)
