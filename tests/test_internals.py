"""resgate.internals: the private parts of Twisted and Autobahn are checked at import."""

from __future__ import annotations

import os
import random
from typing import Any

import pytest
from autobahn.twisted import websocket as autobahn_twisted_websocket
from autobahn.twisted.websocket import WebSocketServerProtocol
from autobahn.util import hltype, hlval
from autobahn.websocket import protocol as autobahn_protocol
from autobahn.websocket.protocol import PreparedMessage, WebSocketProtocol
from autobahn.websocket.xormasker import create_xor_masker
from twisted.internet import abstract, asyncioreactor, tcp
from twisted.protocols import basic
from twisted.logger import formatEvent
from twisted.web import http

from resgate import internals
from resgate.ws import text_frame


def test_the_installed_versions_pass_the_check():
    internals.check()


@pytest.mark.parametrize("break_it, named", [
    (lambda mp: mp.setattr(tcp.Port, "_type", "INET"), "tcp.Port._type"),
    (lambda mp: mp.setattr(PreparedMessage, "__init__", lambda self, *args: None), "PreparedMessage.payloadHybi"),
    (lambda mp: mp.delattr(autobahn_protocol, "create_xor_masker"), "create_xor_masker"),
    (lambda mp: mp.setattr(WebSocketProtocol, "onMessageEnd", lambda self: None), "onMessageEnd"),
    (lambda mp: mp.setattr(WebSocketProtocol, "processData", lambda self: False), "current_frame"),
    (lambda mp: mp.setattr(WebSocketProtocol, "onFrameBegin", lambda self: None), "inside_message"),
    (lambda mp: mp.delattr(autobahn_twisted_websocket, "hlval"), "hltype, hlval"),
    (lambda mp: mp.setattr(http.HTTPChannel, "_optimisticEagerReadSize", None), "_optimisticEagerReadSize"),
    (lambda mp: mp.setattr(http.HTTPChannel, "requestDone", lambda self, request: None), "_waitingForTransport"),
    (lambda mp: mp.delattr(asyncioreactor, "callWithLogger"), "callWithLogger"),
    (lambda mp: mp.setattr(WebSocketServerProtocol, "_connectionMade", lambda self: None), "hltype, hlval"),
    (lambda mp: mp.setattr(WebSocketProtocol, "_connectionMade", lambda self: setattr(self, "newState", None)),
     "connectionMade's attributes"),
    (lambda mp: mp.delattr(autobahn_twisted_websocket, "create_transport_details"), "create_transport_details"),
    (lambda mp: mp.setattr(basic.LineReceiver, "dataReceived", lambda self, data: None), "LineReceiver._buffer"),
])
def test_a_changed_private_part_fails_in_one_line_naming_it(monkeypatch, break_it, named):
    break_it(monkeypatch)
    with pytest.raises(ImportError) as caught:
        internals.check()
    message = str(caught.value)
    assert named in message and "setup.cfg" in message and "\n" not in message


def test_frame_bytes_is_the_whole_frame_of_a_prepared_message():
    assert internals.frame_bytes(PreparedMessage(b"hello", False, False, True)) == b"\x81\x05hello"


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 100, internals.PLAIN_XOR_MAX_FRAME])
@pytest.mark.parametrize("split", [0, 1, 2, 3, 7])
def test_plain_xor_masker_unmasks_as_autobahn_does_in_one_part_or_two(size, split):
    mask, payload = os.urandom(4), os.urandom(size)
    split = min(split, size)
    expected = create_xor_masker(mask, size).process(payload)
    plain = internals.PlainXorMasker(mask)
    assert plain.process(payload[:split]) + plain.process(payload[split:]) == expected
    assert plain.pointer() == size
    plain.reset()
    assert plain.pointer() == 0 and plain.process(payload) == expected


def test_small_frames_get_the_plain_masker_and_large_ones_autobahn_s(monkeypatch):
    monkeypatch.setattr(autobahn_protocol, "create_xor_masker", autobahn_protocol.create_xor_masker)
    internals.unmask_small_frames_in_python()
    small = autobahn_protocol.create_xor_masker(b"abcd", internals.PLAIN_XOR_MAX_FRAME)
    large = autobahn_protocol.create_xor_masker(b"abcd", internals.PLAIN_XOR_MAX_FRAME + 1)
    assert isinstance(small, internals.PlainXorMasker)
    assert not isinstance(large, internals.PlainXorMasker)
    payload = os.urandom(internals.PLAIN_XOR_MAX_FRAME + 1)
    assert large.process(payload) == create_xor_masker(b"abcd", len(payload)).process(payload)


@pytest.mark.parametrize("break_it", [
    lambda mp: mp.setattr(abstract.FileDescriptor, "__init__", lambda self, reactor=None: None),
    lambda mp: mp.setattr(abstract.FileDescriptor, "write", lambda self, data: None),
    lambda mp: mp.setattr(abstract.FileDescriptor, "doWrite", lambda self: None),
    lambda mp: mp.delattr(abstract.FileDescriptor, "SEND_LIMIT"),
])
def test_a_changed_write_fails_the_check(monkeypatch, break_it):
    break_it(monkeypatch)
    with pytest.raises(ImportError, match="FileDescriptor"):
        internals.check()


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_the_gateway_s_text_frames_are_autobahn_s(length):
    """ws.text_frame frames a reply as Autobahn's PreparedMessage would, at every length encoding."""
    payload = bytes(i % 251 for i in range(length))
    assert text_frame(payload) == internals.frame_bytes(PreparedMessage(payload, False, False, True))


@pytest.mark.parametrize("format_value, value", [
    (hltype, WebSocketServerProtocol.connectionMade), (hltype, WebSocketServerProtocol), (hltype, text_frame),
    (hlval, "127.0.0.1:8080"), (hlval, 42), (hlval, None),
])
def test_a_debug_line_s_argument_formats_as_autobahn_s_own(format_value, value):
    argument = internals.LogArgument(format_value, value)
    expected = format_value(value)
    assert (str(argument), repr(argument), f"{argument}", f"{argument:>3}") == (expected, expected, expected,
                                                                              f"{expected:>3}")
    assert formatEvent({"log_format": "{func} for {peer}", "func": argument, "peer": argument}) == (
        f"{expected} for {expected}")


UPGRADE = (b"GET /ws?a=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
           b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-Twice: 1\r\n"
           b"x-twice:  2 \t\r\nCookie: a=b; c=\xe9\r\n\r\n")


def parsed_by(parse, head: bytes) -> Any:
    try:
        return parse(head)
    except ValueError:
        return ValueError


@pytest.mark.parametrize("head", [
    UPGRADE,
    b"GET / HTTP/1.1\r\n\r\n",
    b"\r\n\r\n",
    b" GET / HTTP/1.1 \r\nHost:x\r\nEmpty:\r\nSpaces:   \r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a:b:c\r\n\r\n",
    b"GET / HTTP/1.1\r\n Folded: x\r\n\r\n",  # obs-fold
    b"GET / HTTP/1.1\r\nNo colon\r\n\r\n",
    b"GET / HTTP/1.1\r\nName : spaced\r\n\r\n",
    b"GET / HTTP/1.1\r\nBare\nLF: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nBare\rCR: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nValue: x\x00y\r\n\r\n",
    b"GET / HTTP/1.1\r\nValue: x\x7f\r\n\r\n",
    b"GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /\t HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\n\xe9: x\r\n\r\n",
    b"GET / HTTP/1.1\r\n: x\r\n\r\n",
], ids=lambda head: repr(head[:40]))
def test_an_upgrade_head_parses_as_autobahn_parses_it(head):
    assert parsed_by(internals.parse_upgrade_head, head) == parsed_by(autobahn_protocol.parseHttpHeader, head)


def test_mangled_upgrade_heads_parse_as_autobahn_parses_them():
    """Heads with bytes changed, inserted or deleted, many of them still plain: the same result or both refused."""
    rng = random.Random(1)
    alphabet = b"\r\n\t :\x00\x1f\x7f\x80\xffaZ,;"
    plain = 0
    for _ in range(20_000):
        head = bytearray(UPGRADE)
        for _ in range(rng.randint(1, 3)):
            position = rng.randrange(len(head))
            choice = rng.random()
            if choice < 0.4:
                head[position] = rng.choice(alphabet)
            elif choice < 0.7:
                head.insert(position, rng.choice(alphabet))
            else:
                del head[position]
        end = head.find(b"\r\n\r\n")
        if end < 0:
            continue
        mangled = bytes(head[:end + 4])
        plain += internals._PLAIN_HEAD.fullmatch(mangled) is not None
        assert parsed_by(internals.parse_upgrade_head, mangled) == parsed_by(autobahn_protocol.parseHttpHeader,
                                                                              mangled), mangled
    assert 1000 < plain < 19_000  # both ways were taken
