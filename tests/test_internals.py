"""resgate.internals: the private parts of Twisted and Autobahn are checked at import."""

from __future__ import annotations

import pytest
from autobahn.websocket.protocol import PreparedMessage
from twisted.internet import tcp

from resgate import internals


def test_the_installed_versions_pass_the_check():
    internals.check()


@pytest.mark.parametrize("break_it, named", [
    (lambda mp: mp.setattr(tcp.Port, "_type", "INET"), "tcp.Port._type"),
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

