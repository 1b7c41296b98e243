"""resgate.internals: the private parts of Twisted and Autobahn are checked at import."""

from __future__ import annotations

import pytest
from autobahn.websocket.protocol import PreparedMessage
from twisted.internet import tcp
from twisted.protocols import basic

from resgate import internals


def test_the_installed_versions_pass_the_check():
    internals.check()


@pytest.mark.parametrize("break_it, named", [
    (lambda mp: mp.setattr(tcp.Port, "_type", "INET"), "tcp.Port._type"),
    (lambda mp: mp.setattr(basic.LineReceiver, "_buffer", None), "LineReceiver._buffer"),
    (lambda mp: mp.setattr(PreparedMessage, "__init__", lambda self, *args: None), "PreparedMessage.payloadHybi"),
])
def test_a_changed_private_part_fails_in_one_line_naming_it(monkeypatch, break_it, named):
    break_it(monkeypatch)
    with pytest.raises(ImportError) as caught:
        internals.check()
    message = str(caught.value)
    assert named in message and "setup.cfg" in message and "\n" not in message


def test_frame_bytes_is_the_whole_frame_of_a_prepared_message():
    assert internals.frame_bytes(PreparedMessage(b"hello", False, False, True)) == b"\x81\x05hello"


def test_partial_line_is_what_a_line_receiver_holds_without_a_line_break():
    receiver = basic.LineReceiver()
    receiver.lineReceived = lambda line: None
    receiver.dataReceived(b"GET / HTTP/1.1\r\nHost: exa")
    assert internals.partial_line(receiver) == b"Host: exa"
