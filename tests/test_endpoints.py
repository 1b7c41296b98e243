"""resgate.endpoints: what the gateway reads in an endpoint description before Twisted does."""

from __future__ import annotations

import pytest
from twisted.internet.endpoints import _parse  # the reading ours must agree with

from resgate.endpoints import keyword_value, parameters, tcp_port, without_tls_minimum

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
