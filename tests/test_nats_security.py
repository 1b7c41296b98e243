"""The gateway on a secured NATS: user/password, TLS with client certificates, creds files.

Each scenario runs a real nats-server that demands the credentials. A gateway
with the right ones connects and serves a subscribe end to end (through a
fake service holding the same kind of credentials); a gateway with wrong or
missing ones fails to start with one error line that says what to fix. The
console script is checked too, since that is where an operator reads the line.
"""

from __future__ import annotations

import re
import ssl
from pathlib import Path

import nats
import nkeys
import pytest
import pytest_twisted
from twisted.internet import defer

from resgate.natsbus import MQConnectError
from tests.rig.natsbus import confirm_subscriptions
from tests.rig.aio import as_deferred, failure_of
from tests.rig.nats import NatsServer
from tests.rig.natsjwt import new_identity, write_operator_setup
from tests.rig.pki import write_pki
from tests.rig.process import GatewayProcess, free_port
from tests.rig.resources import client_result, connect_client, subscribe_to
from tests.rig.service import REQUEST_SUBJECTS, FakeService

pytestmark = pytest.mark.usefixtures("logged_errors")

#: nats-server's answer to a CONNECT with credentials it does not accept.
AUTHORIZATION_VIOLATION = "Authorization Violation"


class SecuredFakeService(FakeService):
    """A FakeService whose NATS connection takes nats-py options (``tls``, ``user_credentials``)."""

    def __init__(self, nats_url: str, **options) -> None:
        super().__init__(nats_url)
        self.options = options

    async def start(self) -> "SecuredFakeService":
        self._nc = await as_deferred(nats.connect(self.bus, allow_reconnect=False, **self.options))
        for subject in REQUEST_SUBJECTS:
            await as_deferred(self._nc.subscribe(subject, cb=self._received))
        await confirm_subscriptions(self._nc)
        return self


@pytest_twisted.async_yield_fixture
async def services():
    """Start SecuredFakeServices with ``await services(url, **options)``; all stop afterwards."""
    started = []

    async def start(url, **options):
        service = await SecuredFakeService(url, **options).start()
        started.append(service)
        return service

    yield start
    for service in started:
        await service.stop()


async def serves_a_subscribe(gateway, service) -> None:
    client = await connect_client(gateway)
    response, _ = await subscribe_to(client, service, "test.model")
    assert response["result"] == client_result("test.model")
    await client.close()


async def start_fails(gateway_factory, logged_errors, **settings) -> str:
    """Start a gateway that must fail; its one logged error line, checked against the exception."""
    error = await failure_of(defer.ensureDeferred(gateway_factory(**settings)), 15)
    assert isinstance(error, MQConnectError), repr(error)
    line = logged_errors.messages[-1] if logged_errors.messages else None
    logged_errors.assert_logged(1)
    assert line == f"Failed to start server: {error}"
    assert "\n" not in line
    return line


# ---------------------------------------------------------------------------
# User and password in the URL


@pytest.fixture(scope="module")
def password_nats():
    server = NatsServer(extra_args=("--user", "alice", "--pass", "s3cret")).start()
    yield server
    server.cleanup()


@pytest_twisted.ensureDeferred
async def test_user_and_password_in_url_serve_a_subscribe(password_nats, gateway_factory, services):
    url = f"nats://alice:s3cret@127.0.0.1:{password_nats.port}"
    gateway = await gateway_factory(nats_url=url)
    service = await services(url)
    await serves_a_subscribe(gateway, service)


@pytest_twisted.ensureDeferred
async def test_wrong_password_fails_to_start_with_one_line_that_hides_it(
        password_nats, gateway_factory, logged_errors):
    line = await start_fails(gateway_factory, logged_errors,
                             nats_url=f"nats://alice:wrong@127.0.0.1:{password_nats.port}")
    assert line == ("Failed to start server: cannot connect to NATS at "
                    f"nats://***@127.0.0.1:{password_nats.port}: {AUTHORIZATION_VIOLATION}")


# ---------------------------------------------------------------------------
# TLS with client verification (--natscert, --natskey, --natsrootca)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return write_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_nats(pki):
    """A nats-server that requires TLS and a client certificate signed by the test CA."""
    server = NatsServer(extra_args=pki.nats_server_args()).start()
    yield server
    server.cleanup()


def client_tls(pki) -> ssl.SSLContext:
    """The fake service's TLS: the test CA, and a client certificate it signed."""
    context = ssl.create_default_context(cafile=pki.ca_cert)
    context.load_cert_chain(pki.client_cert, pki.client_key)
    return context


@pytest_twisted.ensureDeferred
async def test_tls_with_client_certificate_serves_a_subscribe(pki, tls_nats, gateway_factory, services):
    gateway = await gateway_factory(nats_url=tls_nats.url, nats_cert=pki.client_cert, nats_key=pki.client_key,
                                    nats_root_cas=[pki.ca_cert])
    service = await services(tls_nats.url, tls=client_tls(pki))
    await serves_a_subscribe(gateway, service)


@pytest_twisted.ensureDeferred
async def test_tls_without_client_certificate_fails_to_start_with_one_line(
        pki, tls_nats, gateway_factory, logged_errors):
    # The server may answer the missing certificate with a TLS alert or just
    # close the socket; either way the line names what is missing.
    for _ in range(3):
        line = await start_fails(gateway_factory, logged_errors, nats_url=tls_nats.url, nats_root_cas=[pki.ca_cert])
        assert line == (f"Failed to start server: cannot connect to NATS at {tls_nats.url}: the server requires "
                        "a client certificate: set --natscert and --natskey (natsCert, natsKey)")


@pytest_twisted.ensureDeferred
async def test_tls_without_root_ca_fails_to_start_with_one_line(pki, tls_nats, gateway_factory, logged_errors):
    line = await start_fails(gateway_factory, logged_errors, nats_url=tls_nats.url,
                             nats_cert=pki.client_cert, nats_key=pki.client_key)
    assert line == (f"Failed to start server: cannot connect to NATS at {tls_nats.url}: the server's certificate "
                    "is not trusted (unable to get local issuer certificate); "
                    "name its CA with --natsrootca (natsRootCAs)")


@pytest_twisted.ensureDeferred
async def test_tls_client_certificate_of_another_ca_fails_to_start_with_one_line(
        pki, tls_nats, gateway_factory, logged_errors, tmp_path):
    other = write_pki(tmp_path / "other", "Other CA")
    line = await start_fails(gateway_factory, logged_errors, nats_url=tls_nats.url,
                             nats_cert=other.client_cert, nats_key=other.client_key, nats_root_cas=[pki.ca_cert])
    assert line.startswith(f"Failed to start server: cannot connect to NATS at {tls_nats.url}: "
                           f"the server rejected the client certificate {other.client_cert} (")


# ---------------------------------------------------------------------------
# Creds file (--creds): operator, account and user JWTs, the user's nkey seed


@pytest.fixture(scope="module")
def operator(tmp_path_factory):
    return write_operator_setup(tmp_path_factory.mktemp("operator"))


@pytest.fixture(scope="module")
def operator_nats(operator):
    """A nats-server in operator mode that trusts ``operator``'s one account."""
    server = NatsServer(extra_args=operator.nats_server_args()).start()
    yield server
    server.cleanup()


@pytest_twisted.ensureDeferred
async def test_creds_file_serves_a_subscribe(operator, operator_nats, gateway_factory, services):
    gateway = await gateway_factory(nats_url=operator_nats.url, nats_creds=operator.creds)
    service = await services(operator_nats.url, user_credentials=operator.creds)
    await serves_a_subscribe(gateway, service)


@pytest_twisted.ensureDeferred
async def test_no_creds_fails_to_start_with_one_line(operator_nats, gateway_factory, logged_errors):
    line = await start_fails(gateway_factory, logged_errors, nats_url=operator_nats.url)
    assert line.endswith(f": {AUTHORIZATION_VIOLATION}")


@pytest_twisted.ensureDeferred
async def test_creds_of_an_untrusted_account_fail_to_start_with_one_line(
        operator, operator_nats, gateway_factory, logged_errors, tmp_path):
    creds = operator.write_creds(tmp_path / "stranger.creds", account=new_identity(nkeys.PREFIX_BYTE_ACCOUNT))
    line = await start_fails(gateway_factory, logged_errors, nats_url=operator_nats.url, nats_creds=creds)
    assert line == (f"Failed to start server: cannot connect to NATS at {operator_nats.url}: "
                    f"{AUTHORIZATION_VIOLATION}")


def _without(text: str, begin: str, end: str) -> str:
    return re.sub(rf"{re.escape(begin)}.*?{re.escape(end)}\n", "", text, flags=re.S)


@pytest_twisted.ensureDeferred
async def test_broken_creds_files_fail_to_start_with_one_line(operator, operator_nats, gateway_factory,
                                                              logged_errors, tmp_path):
    good = Path(operator.creds).read_text()
    no_jwt = tmp_path / "no-jwt.creds"
    # nats-py alone would spin forever on this one, blocking the reactor.
    no_jwt.write_text(_without(good, "-----BEGIN NATS USER JWT-----", "------END NATS USER JWT------"))
    no_seed = tmp_path / "no-seed.creds"
    no_seed.write_text(_without(good, "-----BEGIN USER NKEY SEED-----", "------END USER NKEY SEED------"))
    missing = tmp_path / "missing.creds"
    expected = {
        missing: f"cannot read NATS creds file {missing}: No such file or directory",
        no_jwt: f"NATS creds file {no_jwt} has no user JWT (-----BEGIN NATS USER JWT----- missing)",
        no_seed: f"NATS creds file {no_seed} has no user nkey seed (-----BEGIN USER NKEY SEED----- missing)",
    }
    for path, reason in expected.items():
        line = await start_fails(gateway_factory, logged_errors, nats_url=operator_nats.url, nats_creds=str(path))
        assert line == f"Failed to start server: {reason}"


# ---------------------------------------------------------------------------
# The same through the console script's flags


_ERROR_RECORD = re.compile(r"^\S+ \[resgate[^\]]*#(?:error|critical)\] (.*)$", re.M)


def run_gateway(*flags: str) -> GatewayProcess:
    return GatewayProcess("-i", "127.0.0.1", "-p", str(free_port()), *flags)


def test_console_script_flags_connect_with_tls_and_creds(pki, tls_nats, operator, operator_nats):
    for flags in (("--nats", tls_nats.url, "--natscert", pki.client_cert, "--natskey", pki.client_key,
                   "--natsrootca", pki.ca_cert),
                  ("--nats", operator_nats.url, "--creds", operator.creds)):
        gateway = run_gateway(*flags)
        try:
            gateway.wait_listening()
            assert f"Connected to NATS at {flags[1]}" in gateway.output()
            assert gateway.stop() == 0
            assert not _ERROR_RECORD.search(gateway.output()), gateway.output()
        finally:
            gateway.cleanup()


def test_console_script_exits_with_one_error_line_without_client_certificate(pki, tls_nats):
    gateway = run_gateway("--nats", tls_nats.url, "--natsrootca", pki.ca_cert)
    try:
        assert gateway.wait_exit() == 1
        output = gateway.output()
        assert _ERROR_RECORD.findall(output) == [
            f"Failed to start server: cannot connect to NATS at {tls_nats.url}: the server requires "
            "a client certificate: set --natscert and --natskey (natsCert, natsKey)"
        ], output
        assert "Traceback" not in output
    finally:
        gateway.cleanup()
