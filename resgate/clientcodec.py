"""The RES client's wire format: responses and events as the gateway sends them.

codec.py encodes and decodes what goes to and comes from services; this
module encodes what goes to clients (JSON-RPC responses, events), and
``SharedMessage`` carries one such message encoded once for many clients.
"""

from __future__ import annotations

from typing import Any

import orjson

from resgate import errors

#: The result of a request that has none (unsubscribe): the response leaves it out.
NO_RESULT = object()


def encode_result(request_id: Any, result: Any) -> bytes:
    """A success response; NO_RESULT is left out, as Resgate does, None is null."""
    if result is NO_RESULT:
        return orjson.dumps({"id": request_id})
    return orjson.dumps({"result": result, "id": request_id})


def encode_error(request_id: Any, error: errors.ResError) -> bytes:
    return orjson.dumps({"error": error.to_dict(), "id": request_id})


def encode_event(rid: str, event: str, data: Any) -> bytes:
    """A client event message, ``{"event": "<rid>.<event>", "data": ...}``.

    ``data`` is always written, ``null`` included: a custom event's payload
    reaches the client as the service sent it, and an event without one (an
    empty payload, a delete) carries ``"data":null`` as Resgate's does.
    """
    return orjson.dumps({"event": f"{rid}.{event}", "data": data})


class SharedMessage:
    """A client message sent unchanged to many connections.

    ``data`` is encoded once; a transport may keep its framed form in
    ``prepared`` (a WebSocket frame) so it is framed once as well.
    """

    __slots__ = ("data", "prepared")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.prepared: Any = None
