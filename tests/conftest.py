import pytest

from tests.rig.nats import NatsServer


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
