"""resgate.endpoints: what the gateway reads in an endpoint description before Twisted does."""

from __future__ import annotations

import pytest
from twisted.internet.endpoints import _parse  # the reading ours must agree with

from resgate.endpoints import keyword_value, parameters, tcp_port, with_backlog, without_tls_minimum

DESCRIPTIONS = [
    "tcp:8080",
    "tcp:port=8080:interface=\\:\\:",
    "ssl:8443:privateKey=C\\:\\\\keys\\\\k.pem:extraCertChain=a=b",
    "unix:/run/a\\:b.sock:mode=660",
    "tcp:",
    "haproxy:ssl:0:minTLS=1.3",
    "k\\=ey=value",
]


@pytest.mark.parametrize("description", DESCRIPTIONS)
def test_parameters_are_read_as_twisted_reads_them(description):
    args, kwargs = _parse(description)
    parts = parameters(description)
    assert [part.value for part in parts if part.key is None] == args
    assert {part.key: part.value for part in parts if part.key is not None} == kwargs
    assert ":".join(part.raw for part in parts) == description


@pytest.mark.parametrize("description, port", [
    ("tcp:8080", 8080), ("tcp:port=0:interface=127.0.0.1", 0), ("haproxy:haproxy:ssl:0", 0),
    ("ssl:interface=\\:\\::8443", 8443), ("tcp:http", None), ("unix:0", None), ("systemd:domain=INET:index=0", None),
])
def test_tcp_port(description, port):
    assert tcp_port(description) == port


def test_min_tls_is_taken_out_escapes_and_all():
    description = "haproxy:ssl:0:privateKey=C\\:\\\\k.pem:minTLS=1.3:interface=\\:\\:"
    assert without_tls_minimum(description) == ("haproxy:ssl:0:privateKey=C\\:\\\\k.pem:interface=\\:\\:", "1.3")
    assert without_tls_minimum("ssl:0") == ("ssl:0", None)
    # A colon escaped in a value is no parameter of its own.
    assert without_tls_minimum("ssl:0:privateKey=a\\:minTLS=1.3") == ("ssl:0:privateKey=a\\:minTLS=1.3", None)


def test_keyword_value():
    assert keyword_value("ssl:0:dhParameters=/etc/dh\\:2.pem", "dhParameters") == "/etc/dh:2.pem"
    assert keyword_value("ssl:0", "dhParameters") is None


@pytest.mark.parametrize("description, expected", [
    ("tcp:8080", "tcp:8080:backlog=9"),
    ("tcp:port=8080:interface=127.0.0.1", "tcp:port=8080:interface=127.0.0.1:backlog=9"),
    ("ssl:443:privateKey=k.pem:certKey=c.pem", "ssl:443:privateKey=k.pem:certKey=c.pem:backlog=9"),
    ("unix:/run/resgate.sock", "unix:/run/resgate.sock:backlog=9"),
    ("haproxy:tcp:8080", "haproxy:tcp:8080:backlog=9"),
    # named or positional backlogs, and kinds without one, stay as they are
    ("tcp:8080:backlog=50", "tcp:8080:backlog=50"),
    ("tcp:8080:127.0.0.1", "tcp:8080:127.0.0.1"),
    ("unix:/run/r.sock:600", "unix:/run/r.sock:600"),
    ("systemd:domain=INET:index=0", "systemd:domain=INET:index=0"),
    ("", ""),
])
def test_a_description_without_a_backlog_gets_the_gateway_s(description, expected):
    assert with_backlog(description, 9) == expected
