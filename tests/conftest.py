import pytest
import pytest_twisted
from twisted.logger import globalLogPublisher

from resgate.config import Config
from resgate.service import GatewayService
from resgate.process import install_reactor
from tests.rig.aio import within
from tests.rig.buses import BUS_KINDS
from tests.rig.logs import ErrorLog, FailureLog, GatewayLines
from tests.rig.memorybus import MemoryBroker
from tests.rig.nats import NatsServer
from tests.rig.service import BusAddress, FakeService


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """Run the tests on the reactor and event loop the gateway runs on (uvloop).

    pytest-twisted's ``--reactor=asyncio`` then finds it installed.
    """
    install_reactor()


def pytest_addoption(parser):
    parser.addoption(
        "--long", action="store_true", default=False,
        help="run the long variants of the reliability tests (soak for 10 minutes, ...)",
    )


@pytest.fixture(scope="session")
def long_run(request) -> bool:
    """True when the suite runs with ``--long``: reliability tests run their long variants."""
    return request.config.getoption("--long")


@pytest.fixture(scope="session")
def nats_server():
    """A nats-server shared by the whole session; tests use distinct subjects."""
    server = NatsServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def private_nats_server():
    """A nats-server of the test's own, for tests that stop or restart it."""
    server = NatsServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def bus_kind(request) -> str:
    """The bus the test runs over: ``nats``, or each of ``memory`` and ``nats``
    in a module marked ``tests.rig.buses.OVER_BOTH_BUSES``."""
    kind = getattr(request, "param", "nats")
    if kind not in BUS_KINDS:
        raise ValueError(f"unknown bus {kind!r}; expected one of {BUS_KINDS}")
    return kind


@pytest.fixture
def memory_broker(bus_kind) -> MemoryBroker | None:
    """The test's in-memory broker when it runs over the memory bus, else None."""
    return MemoryBroker() if bus_kind == "memory" else None


@pytest.fixture
def bus_address(memory_broker, nats_server) -> BusAddress:
    """Where the test's services connect: its MemoryBroker, or the shared nats-server's URL."""
    return memory_broker if memory_broker is not None else nats_server.url


@pytest.fixture
def event_subscriptions(memory_broker, nats_server):
    """``await event_subscriptions()``: the resources with an event subscription on the test's bus.

    Over NATS the module's ``nats_server`` must be a
    ``tests.rig.resources.MonitoredNatsServer``; the server may see an
    unsubscribe a little after the gateway made it.
    """
    async def names() -> set[str]:
        if memory_broker is not None:
            return memory_broker.event_subscriptions()
        return await nats_server.event_subscriptions()

    return names


@pytest_twisted.async_yield_fixture
async def gateway_factory(nats_server, memory_broker):
    """Start in-process gateways on free loopback ports; all stop after the test.

    ``await gateway_factory(**config)`` returns a started GatewayService (on a
    free loopback port, unless the config names ``listen`` endpoints) whose
    config has the shared nats-server's URL unless the test names another.
    Over the memory bus each gateway gets a MemoryBus of the test's broker
    (with the config's request timeout) instead; ``reactor`` passes a
    reactor of the test's own (``tests.rig.clock.ClockedReactor``),
    ``tracer_provider`` an OpenTelemetry TracerProvider that records its spans.
    """
    gateways = []

    async def start(unsubscribe_delay=None, reactor=None, tracer_provider=None, **settings):
        if memory_broker is not None and "nats_url" in settings:
            raise ValueError("a gateway on the memory bus has no nats_url: run the test over NATS only")
        settings.setdefault("nats_url", nats_server.url)
        # A gateway on listen endpoints has no addr and port.
        loopback = {} if "listen" in settings else {"addr": "127.0.0.1", "port": 0}
        config = Config(**loopback, **settings)
        options = {} if unsubscribe_delay is None else {"unsubscribe_delay": unsubscribe_delay}
        if reactor is not None:
            options["reactor"] = reactor
        if tracer_provider is not None:
            options["tracer_provider"] = tracer_provider
        if memory_broker is not None:
            options["bus"] = memory_broker.bus(request_timeout=config.request_timeout / 1000, clock=reactor)
        gateway = GatewayService(config, **options)
        gateways.append(gateway)
        gateway.startService()
        await within(gateway.when_started(), 15)
        return gateway

    yield start
    for gateway in reversed(gateways):
        await within(gateway.stopService(), 15)


@pytest_twisted.async_yield_fixture
async def fake_service(bus_address):
    """A scripted RES service on the test's bus (the shared nats-server by default)."""
    service = await FakeService(bus_address).start()
    yield service
    await service.stop()


@pytest_twisted.async_yield_fixture
async def gateway(gateway_factory):
    """A gateway with default settings on a free loopback port."""
    yield await gateway_factory()


def _watch(log, complaint: str):
    """Observe the global log with ``log`` for a test; fail at teardown if it kept anything."""
    globalLogPublisher.addObserver(log)
    try:
        yield log
    finally:
        globalLogPublisher.removeObserver(log)
    assert log.messages == [], f"{complaint}: {log.messages}"


@pytest.fixture
def logged_errors(gateway_factory):
    """The errors the gateway logs during the test (a ``tests.rig.logs.ErrorLog``).

    The test counts the errors it expects with ``await logged_errors.expect(n)``
    or ``logged_errors.assert_logged(n)``; any other error fails the test at
    teardown, the way Resgate's teardown does. It depends on
    ``gateway_factory`` so its check runs before the gateways stop. A module
    whose every test should be watched says so with
    ``pytestmark = pytest.mark.usefixtures("logged_errors")``.
    """
    yield from _watch(ErrorLog(), "the gateway logged errors")


@pytest.fixture
def logged_failures():
    """Errors and failures logged by any logger during the test (a ``tests.rig.logs.FailureLog``).

    Wider than ``logged_errors``: hostile input that makes Autobahn or
    twisted.web raise is logged by them, not by the gateway. Any such entry
    fails the test at teardown.
    """
    yield from _watch(FailureLog(), "errors were logged")


@pytest.fixture
def gateway_lines():
    """Every line the gateway side logs during the test (a ``tests.rig.logs.GatewayLines``)."""
    lines = GatewayLines()
    globalLogPublisher.addObserver(lines)
    yield lines
    globalLogPublisher.removeObserver(lines)
