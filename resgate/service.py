"""GatewayService: the gateway as one Twisted service.

Start-up order matters: the embedded nats-server (when asked for), then the
NATS connection, then the listening port, so no client is accepted before
the gateway can serve it. Stopping runs in reverse. The service never stops
the reactor: a process that wants to exit when the gateway fails (twistd, the
``resgate`` script) sets ``on_fatal``; an application that hosts the gateway
keeps running whatever happens to it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Callable

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL
from twisted.application.service import MultiService, Service
from twisted.internet import defer
from twisted.internet.endpoints import quoteStringArgument, serverFromString
from twisted.internet.ssl import CertificateOptions, TLSVersion
from twisted.logger import Logger
from twisted.python.failure import Failure

import resgate
from resgate.admission import ConnectionLimits, default_max_connections
from resgate.bus import Bus
from resgate.cache.cache import UNSUBSCRIBE_DELAY, ResourceCache
from resgate.config import Config, ConfigError
from resgate.endpoints import endpoint_kind, keyword_value, with_backlog, without_tls_minimum
from resgate.context import GatewayContext
from resgate.embedded import EmbeddedNatsService
from resgate.errors import describe_failure
from resgate.messaging import MessagingService, reconnect_backoff
from resgate.metrics import MetricsResource
from resgate.natsbus import NatsBus
from resgate.probes import MonitorResource, Readiness
from resgate.site import DirectUpgrade, GatewayRoot, GatewaySite, PlainGet
from resgate.status import GatewayStatus
from resgate.statuspage import StatusPage
from resgate.tracing import configured_tracing
from resgate.transport import PortReactor, describe_address, send_corked, set_unread_check
from resgate.web import ApiResource, HttpBounds
from resgate.workqueue import WorkQueue
from resgate.ws import ClientFactory, UpgradeResource

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

log = Logger(namespace="resgate")

_PENDING = object()

#: A certificate chain or key file is a few kilobytes; reading one is bounded all the same.
MAX_PEM_FILE_SIZE = 1024 * 1024
#: The TLS versions ``minTLS=`` names (resgate.endpoints.TLS_MINIMUM_VERSIONS).
TLS_VERSIONS = {"1.2": TLSVersion.TLSv1_2, "1.3": TLSVersion.TLSv1_3}

#: The listen backlog asked for: Linux caps it at ``net.core.somaxconn``, so
#: this is the kernel's limit, as Go's listeners in Resgate ask for. Twisted's
#: default of 50 drops the SYNs of clients connecting faster than one loop turn
#: accepts them, and each dropped SYN costs its client a one-second retry.
LISTEN_BACKLOG = 65535


def listen_description(config: Config, port: int | None = None) -> str:
    """The Twisted endpoint string for the configured address and port.

    ``port`` names another port on the same address (the metrics port). With
    ``--tls`` the client port serves TLS from ``tls_options``, not from an
    ``ssl:`` string: Twisted's parser of those hands pyOpenSSL its own
    X509/PKey objects, which pyOpenSSL deprecates (a warning on every start).
    """
    # An empty addr means every interface: "::" listens on IPv6 and IPv4 alike.
    host = config.listen_host or "::"
    return (f"tcp:port={config.port if port is None else port}:interface={quoteStringArgument(host)}"
            f":backlog={LISTEN_BACKLOG}")


def tls_options(cert_file: str, key_file: str) -> CertificateOptions:
    """TLS settings from a PEM certificate (the first of the file) and a PEM key file.

    As Twisted's ``ssl:`` endpoints read them, but as cryptography's objects.
    Raises OSError or ValueError, naming the file, when one cannot be read.
    """
    try:
        certificate = x509.load_pem_x509_certificate(_read_pem(cert_file, "certificate"))
    except ValueError:
        raise ValueError(f"TLS certificate file {cert_file} holds no PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(_read_pem(key_file, "private key"), password=None)
    except (ValueError, TypeError):
        raise ValueError(f"TLS key file {key_file} holds no unencrypted PEM private key") from None
    # Twisted types these as pyOpenSSL's objects; it passes them to pyOpenSSL,
    # which takes cryptography's (and deprecates its own).
    options = CertificateOptions(privateKey=key, certificate=certificate)  # type: ignore[arg-type]
    try:
        options.getContext()  # checks the key against the certificate before any client connects
    except SSL.Error:
        raise ValueError(f"TLS key file {key_file} is not the key of certificate file {cert_file}") from None
    return options


def check_dh_parameters(path: str) -> None:
    """Raise OSError or ValueError, naming the file, unless it holds PEM Diffie-Hellman parameters.

    Twisted's ``ssl:`` passes the path on, and OpenSSL reads it only when the
    first client connects: a bad file would fail every handshake instead of the start.
    Here OpenSSL reads it as it will then, into a context of its own.
    """
    _read_pem(path, "DH parameters")
    try:
        SSL.Context(SSL.TLS_METHOD).load_tmp_dh(path)
    except SSL.Error:
        raise ValueError(f"DH parameters file {path} holds no PEM DH parameters") from None


def _read_pem(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(MAX_PEM_FILE_SIZE)
    except OSError as e:
        raise OSError(f"cannot read TLS {what} file {path}: {e.strerror}") from None


class CacheService(Service):
    """The resource cache, between the NATS connection and the clients.

    Stopping it closes every client connection (1001, going away): their
    resources cannot stay current without it.
    """

    name = "cache"

    def __init__(self, cache: ResourceCache, clients: ClientFactory) -> None:
        self.cache = cache
        self.clients = clients

    def startService(self) -> None:
        super().startService()
        self.cache.start()

    def stopService(self) -> None:
        super().stopService()
        self.clients.close_all()
        self.cache.stop()
        self.clients.context.client_log.stop()


class ListeningService(Service):
    """Listens on a Twisted endpoint; ``startService`` fires once listening.

    The description is parsed on creation, so that a bad one is a ConfigError
    before anything starts. Client connections are corked and counted against
    the caps of ``limits``, and TCP ports get ``SO_REUSEPORT`` when
    ``reuse_port`` is set before starting (resgate.transport).
    """

    name = "listener"

    def __init__(self, description: str, factory, reactor, name: str = "listener",
                 tls_files: tuple[str, str] | None = None, limits: ConnectionLimits | None = None) -> None:
        self.name = name
        self.description = description
        #: (certificate, key) PEM files: the TCP endpoint serves TLS with them.
        self.tls_files = tls_files
        self.factory = factory
        self.ports = PortReactor(reactor, limits=limits)
        self.endpoint = parse_endpoint(self.ports, description)
        self.port = None

    @property
    def reuse_port(self) -> bool:
        return self.ports.reuse_port

    @reuse_port.setter
    def reuse_port(self, reuse: bool) -> None:
        self.ports.reuse_port = reuse

    def startService(self) -> defer.Deferred:
        super().startService()
        try:
            self.ports.tls = tls_options(*self.tls_files) if self.tls_files is not None else None
        except (OSError, ValueError) as e:
            return defer.fail(e)
        return self.endpoint.listen(self.factory).addCallback(self._listening)

    def _listening(self, port) -> None:
        self.port = port
        what = "Metrics listening" if self.name == "metrics" else "Listening"
        log.info("{what} on {address}", what=what, address=describe_address(port.getHost()))

    def stopService(self) -> defer.Deferred:
        super().stopService()
        port, self.port = self.port, None
        if port is None:
            return defer.succeed(None)
        return defer.maybeDeferred(port.stopListening)


def parse_endpoint(ports: PortReactor, description: str):
    """The server endpoint of a Twisted endpoint description listening through ``ports``;
    raises ConfigError saying why not. The gateway's ``minTLS=`` sets ``ports.tls_minimum``;
    a description without ``backlog=`` listens with ``LISTEN_BACKLOG``."""
    try:
        twisted_description, tls_minimum = without_tls_minimum(description)
        twisted_description = with_backlog(twisted_description, LISTEN_BACKLOG)
        endpoint = serverFromString(ports, twisted_description)
        dh_parameters = keyword_value(twisted_description, "dhParameters")
        if dh_parameters is not None and endpoint_kind(description) == "ssl":
            check_dh_parameters(dh_parameters)
    except Exception as e:  # each endpoint parser raises its own kinds
        raise ConfigError(f"invalid listen {json.dumps(description)}: {_endpoint_problem(description, e)}"
                          ) from None
    ports.tls_minimum = TLS_VERSIONS[tls_minimum] if tls_minimum is not None else None
    return endpoint


def _endpoint_problem(description: str, error: Exception) -> str:
    if isinstance(error, TypeError):  # a parser function's signature refused the parameters
        return f"unknown or missing parameter ({str(error).partition(') ')[2] or error})"
    if isinstance(error, (IndexError, KeyError)) and endpoint_kind(description) == "systemd":
        return ("no such socket was passed to this process"
                " (LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID from systemd)")
    if isinstance(error, OSError) and error.filename:
        return f"cannot read {error.filename}: {error.strerror}"
    return str(error) or type(error).__name__


class GatewayService(MultiService):
    """One RES gateway: NATS connection, resource cache and client endpoint.

    ``listen`` overrides the endpoints of the config (tests listen on
    ``tcp:0:interface=127.0.0.1``), which are ``config.listen`` or else the
    one of addr, port and TLS. Raises ConfigError for a description Twisted
    cannot parse.
    ``on_fatal`` is called with a one-line reason when the gateway fails to
    start or loses NATS; by default the failure is only logged. ``bus``
    replaces the NATS connection built from the config (tests pass an
    in-memory bus). ``tracer_provider`` records the spans of client requests
    (docs/operations.md, "Tracing"); without one, OpenTelemetry's global
    provider does if one is configured when the gateway is built.
    """

    name = "resgate"

    def __init__(self, config: Config, *, reactor=None, listen: str | None = None,
                 unsubscribe_delay: float = UNSUBSCRIBE_DELAY, bus: Bus | None = None,
                 tracer_provider: TracerProvider | None = None) -> None:
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor
        self.config = config
        self.reactor = reactor
        self.on_fatal: Callable[[str], None] | None = None
        self.embedded_nats: EmbeddedNatsService | None = None
        if config.embedded_nats_address is not None:
            host, port = config.embedded_nats_address
            self.embedded_nats = EmbeddedNatsService(host, port, reactor=reactor, debug=config.debug)
            self.embedded_nats.setServiceParent(self)
        self.mq: Bus = bus if bus is not None else NatsBus(
            config.nats_url,
            creds=config.nats_creds or None,
            cert=config.nats_cert or None,
            key=config.nats_key or None,
            root_cas=config.nats_root_cas,
            request_timeout=config.request_timeout / 1000,
            reactor=reactor,
            trace=config.trace,
            read_handled=send_corked,
        )
        MessagingService(
            self.mq, reactor, self._nats_lost, self._nats_restored,
            retry_delay=reconnect_backoff(config.reconnect_max_delay / 1000),
        ).setServiceParent(self)
        # Corked writes wait for the end of the turn only while this bus has more read (resgate.transport).
        set_unread_check(self.mq.has_unread)
        self.work = WorkQueue()
        self.cache = ResourceCache(self.mq, self.work, reactor=reactor, unsubscribe_delay=unsubscribe_delay,
                                   reset_throttle=config.reset_throttle)
        self.context = GatewayContext(self.cache, config, debug=config.debug, trace=config.trace,
                                      tracing=configured_tracing(tracer_provider))
        self.clients = ClientFactory(self.context, compression=config.ws_compression)
        CacheService(self.cache, self.clients).setServiceParent(self)
        self.metrics = self.context.metrics
        self.metrics.current_connections = lambda: len(self.clients.protocols)
        self.metrics.cache_resources = lambda: len(self.cache.names)
        self.metrics.cache_subscriptions = lambda: sum(es.count for es in self.cache.names.values())
        api = ApiResource(self.context)
        root = GatewayRoot(config.ws_path, UpgradeResource(self.clients), config.api_path, api)
        http_bounds = HttpBounds.of(config)
        self.site = GatewaySite(root, http_bounds, direct_upgrade=DirectUpgrade(config.ws_path, self.clients),
                                plain_get=PlainGet(config.ws_path, config.api_path, api))
        tls_files = (config.tls_cert, config.tls_key) if config.tls and listen is None else None
        descriptions = [listen] if listen is not None else config.listen or [listen_description(config)]
        #: Shared by every client listener: the caps hold for the process.
        self.connection_limits = ConnectionLimits(config.max_conns or default_max_connections(),
                                                  config.max_conns_per_addr)
        self.connection_limits.on_refused = self._log_refusal
        self.metrics.connections_refused = lambda: self.connection_limits.refused_total
        #: One per endpoint clients connect to; ``listener`` is the first.
        self.listeners = [
            ListeningService(description, self.site, reactor, name=f"listener {number}" if number else "listener",
                             tls_files=tls_files, limits=self.connection_limits)
            for number, description in enumerate(descriptions)
        ]
        self.listener = self.listeners[0]
        self.readiness = Readiness(lambda: self.mq.is_connected,
                                   lambda: all(listener.port is not None for listener in self.listeners))
        self.status = GatewayStatus(metrics=self.metrics, cache=self.cache, bus=self.mq, readiness=self.readiness,
                                    http_connections=lambda: self.site.http_connections,
                                    workers=config.workers, clock=reactor)
        if config.metrics_port:
            # Sampled only where the status page is served.
            self.status.setServiceParent(self)
            # Before the client listener, so stopped after it: /readyz keeps
            # answering (503, shutting down) until clients are turned away.
            monitor = MonitorResource(MetricsResource(self.metrics), self.readiness, StatusPage(self.status))
            metrics_site = GatewaySite(monitor, http_bounds)
            ListeningService(listen_description(config, config.metrics_port), metrics_site, reactor,
                             name="metrics").setServiceParent(self)
        for listener in self.listeners:
            listener.setServiceParent(self)
        self._starting: defer.Deferred | None = None
        self._start_outcome: object = _PENDING
        self._start_waiters: list[defer.Deferred] = []

    @property
    def port(self) -> int | None:
        """The port clients connect to, once listening (the first listener's, on TCP)."""
        return getattr(self.listener.port.getHost(), "port", None) if self.listener.port is not None else None

    @property
    def ws_url(self) -> str:
        """The WebSocket URL of this gateway, once listening (loopback view)."""
        scheme = "wss" if self.config.tls else "ws"
        return f"{scheme}://127.0.0.1:{self.port}{self.config.ws_path}"

    @property
    def api_url(self) -> str:
        """The URL prefix of resources over HTTP, once listening (loopback view)."""
        return f"{self.config.scheme}://127.0.0.1:{self.port}{self.config.api_path}"

    def startService(self) -> None:
        """Start the children one after another (see ``when_started``)."""
        Service.startService(self)
        log.info(
            "Starting resgate version {version} (RES protocol {protocol})",
            version=resgate.__version__,
            protocol=resgate.PROTOCOL_VERSION,
        )
        self.readiness.shutting_down = False
        self.readiness.lost_reason = None
        self._start_outcome = _PENDING
        self._starting = defer.ensureDeferred(self._start_children())
        self._starting.addBoth(self._started)

    def when_started(self) -> defer.Deferred:
        """A Deferred that fires when started, or fails with why it could not."""
        d: defer.Deferred = defer.Deferred()
        if self._start_outcome is _PENDING:
            self._start_waiters.append(d)
        else:
            self._fire_waiter(d, self._start_outcome)
        return d

    def _started(self, outcome) -> None:
        self._start_outcome = outcome
        waiters, self._start_waiters = self._start_waiters, []
        for d in waiters:
            self._fire_waiter(d, outcome)

    @staticmethod
    def _fire_waiter(d: defer.Deferred, outcome) -> None:
        if isinstance(outcome, Failure):
            d.errback(outcome)
        else:
            d.callback(outcome)

    async def _start_children(self) -> None:
        started: list[Service] = []
        try:
            for child in self:
                await defer.maybeDeferred(child.startService)
                started.append(child)
                if not self.running:
                    raise defer.CancelledError("stopped while starting")
        except BaseException as failure:
            for child in reversed(started):
                await defer.maybeDeferred(child.stopService).addErrback(_log_stop_failure, child)
            self.running = False
            reason = describe_failure(failure)
            log.error("Failed to start server: {reason}", reason=reason)
            self._fatal(reason)
            raise

    def stopService(self) -> defer.Deferred:
        """Stop the children in reverse order of starting."""
        was_running = self.running
        Service.stopService(self)
        if not was_running:
            return defer.succeed(None)
        # Not ready from the first moment of shutdown, before any child stops.
        self.readiness.shutting_down = True
        return defer.ensureDeferred(self._stop_children())

    async def _stop_children(self) -> None:
        if self._starting is not None and not self._starting.called:
            await self.when_started().addErrback(lambda _: None)
        for child in reversed(list(self)):
            if child.running:
                await defer.maybeDeferred(child.stopService).addErrback(_log_stop_failure, child)
        log.info("Server stopped")

    def _log_refusal(self, host: str, by_address: bool) -> None:
        """A connection refused past a cap: logged once, then counted per window (a flood is one line)."""
        if by_address:
            self.context.client_log.log(
                log.warn, "refused: address cap", "Refused connections past maxConnsPerAddr",
                "Refused a connection from {host}: {limit} connections from its address already",
                host=host, limit=self.connection_limits.max_per_address)
        else:
            self.context.client_log.log(
                log.warn, "refused: connection cap", "Refused connections past maxConns",
                "Refused a connection from {host}: {limit} client connections already",
                host=host, limit=self.connection_limits.max_total)

    def _nats_lost(self, reason: str) -> None:
        # Every cached resource is stale once NATS is gone: clients are let go
        # (they reconnect and resubscribe) and new ones are turned away until
        # the connection is back.
        log.error("{reason}; disconnecting clients until NATS is back", reason=reason)
        self.readiness.lost_reason = reason
        self.status.nats_lost(reason)
        self.context.available = False
        self.work.enqueue(self._drop_clients)

    def _drop_clients(self) -> None:
        self.clients.close_all()
        self.cache.stop()

    def _nats_restored(self) -> None:
        self.work.enqueue(self.cache.start)
        self.context.available = True
        self.readiness.lost_reason = None
        self.status.nats_restored()

    def _fatal(self, reason: str) -> None:
        if self.on_fatal is not None:
            self.on_fatal(reason)


def _log_stop_failure(failure: Failure, child: Service) -> None:
    log.failure("Stopping {child}", failure, child=child.name)
