"""A WebSocket client for tests: RES-client requests, responses and events."""

from __future__ import annotations

import json
from typing import Any

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol, connectWS
from twisted.internet import defer

from tests.rig.aio import WAIT_TIMEOUT, within


class WsClient(WebSocketClientProtocol):
    """Sends requests with increasing ids and sorts what arrives.

    Responses are matched to their request by id; everything else (events,
    and responses without a matching id) waits in ``inbox`` for
    ``next_message``. ``messages`` keeps all of it, in arrival order.
    """

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[Any] = []
        #: Every text frame as received, for tests of the gateway's exact bytes.
        self.frames: list[bytes] = []
        self.inbox: list[Any] = []
        self._next_id = 1
        self._pending: dict[int, defer.Deferred] = {}
        self._waiting: list[defer.Deferred] = []
        self.closed: defer.Deferred = defer.Deferred()
        self.close_code: int | None = None

    def onOpen(self) -> None:
        self.factory.opened.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.frames.append(payload)
        message = json.loads(payload)
        self.messages.append(message)
        if isinstance(message, dict):
            d = self._pending.pop(message.get("id"), None)
            if d is not None:
                d.callback(message)
                return
        if self._waiting:
            self._waiting.pop(0).callback(message)
        else:
            self.inbox.append(message)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.close_code = code
        if not self.factory.opened.called:
            self.factory.opened.errback(ConnectionError(f"WebSocket closed: {code} {reason}"))
        if not self.closed.called:
            self.closed.callback(code)

    def request(self, method: str, params: Any = None, timeout: float = WAIT_TIMEOUT) -> defer.Deferred:
        """Send ``{"id", "method", "params"}``; fires with the whole response."""
        rid = self._next_id
        self._next_id += 1
        message: dict[str, Any] = {"id": rid, "method": method}
        if params is not None:
            message["params"] = params
        d: defer.Deferred = defer.Deferred()
        self._pending[rid] = d
        self.sendMessage(json.dumps(message).encode())
        return within(d, timeout)

    def send_raw(self, data: bytes | str) -> None:
        """Send a text frame as given, for malformed or hostile input."""
        self.sendMessage(data.encode() if isinstance(data, str) else data)

    def next_message(self, timeout: float = WAIT_TIMEOUT) -> defer.Deferred:
        """The next message not matched to a pending request."""
        if self.inbox:
            return defer.succeed(self.inbox.pop(0))
        d: defer.Deferred = defer.Deferred()
        self._waiting.append(d)
        return within(d, timeout)

    def close(self, timeout: float = WAIT_TIMEOUT) -> defer.Deferred:
        if not self.closed.called:
            self.sendClose()
        return within(self.closed, timeout)


def connect_ws(url: str, headers: dict[str, str] | None = None, timeout: float = WAIT_TIMEOUT,
               protocol: type[WsClient] = WsClient) -> defer.Deferred:
    """Open a WebSocket to ``url``; fires with the connected WsClient (or ``protocol``)."""
    factory = WebSocketClientFactory(url, headers=headers or {})
    factory.protocol = protocol
    factory.opened = defer.Deferred()
    connectWS(factory, timeout=timeout)
    return within(factory.opened, timeout)
