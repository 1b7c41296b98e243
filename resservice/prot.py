"""Calling other services: get their resources, call and auth their methods, ask their access.

A service (or any program on the bus) asks as a gateway would::

    client = Client(service.bus)
    book = await client.get("library.book.1")          # a Model
    result = await client.call("library.books", "new", {"title": "Dune"})

Errors come back raised as ResError; a pre-response (``timeout:"..."``)
extends the wait as the protocol says.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from resservice import errors
from resservice.bus import Bus, Message
from resservice.request import Access
from resservice.values import Collection, Model, ResourceResult, decode_value

#: How long a request waits for its response unless a pre-response says otherwise (Resgate's default).
DEFAULT_REQUEST_TIMEOUT = 3.0
_PRE_RESPONSE = re.compile(rb'^timeout:"(\d+)"$')


class Client:
    """Requests to other services over ``bus`` (a service's ``service.bus``, or a bus of its own)."""

    def __init__(self, bus: Bus, timeout: float = DEFAULT_REQUEST_TIMEOUT) -> None:
        self.bus = bus
        self.timeout = timeout

    async def request(self, subject: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send one request; its response object (``result`` or ``error`` raised as ResError)."""
        loop = asyncio.get_running_loop()
        inbox = self.bus.new_inbox()
        replies: asyncio.Queue[Message] = asyncio.Queue()
        sub = await self.bus.subscribe(inbox, replies.put_nowait)
        deadline = loop.time() + self.timeout
        try:
            await self.bus.publish(subject, json.dumps(payload or {}).encode(), reply=inbox)
            while True:
                try:
                    message = await asyncio.wait_for(replies.get(), max(deadline - loop.time(), 0))
                except asyncio.TimeoutError:
                    raise errors.timeout() from None
                pre = _PRE_RESPONSE.match(message.data)
                if pre:
                    deadline = loop.time() + int(pre.group(1)) / 1000
                    continue
                break
        finally:
            await sub.unsubscribe()
        try:
            response = json.loads(message.data)
        except ValueError:
            raise errors.internal_error("invalid response") from None
        if not isinstance(response, dict):
            raise errors.internal_error("invalid response")
        if "error" in response:
            raise errors.ResError.from_json(response["error"])
        if "result" not in response and "resource" not in response:
            raise errors.internal_error("response has no result")
        return response

    async def get(self, rid: str) -> Model | Collection:
        """The resource ``rid`` (``name?query``), its references as Ref values."""
        name, _, query = rid.partition("?")
        result = (await self.request(f"get.{name}", {"query": query} if query else None)).get("result")
        if isinstance(result, dict) and isinstance(result.get("model"), dict):
            return Model({k: decode_value(v) for k, v in result["model"].items()}, result.get("query"))
        if isinstance(result, dict) and isinstance(result.get("collection"), list):
            return Collection([decode_value(v) for v in result["collection"]], result.get("query"))
        raise errors.internal_error("invalid get response")

    async def call(self, rid: str, method: str, params: Any = None, *, cid: str | None = None,
                   token: Any = None) -> Any:
        """Call a method: its result, or a ResourceResult when the service answers with a resource."""
        response = await self.request(f"call.{rid}.{method}", _fields(params=params, cid=cid, token=token))
        return _result(response)

    async def auth(self, rid: str, method: str, params: Any = None, *, cid: str | None = None,
                   token: Any = None, header: dict[str, list[str]] | None = None) -> Any:
        """Call an auth method, as a gateway would for connection ``cid``."""
        response = await self.request(f"auth.{rid}.{method}",
                                      _fields(params=params, cid=cid, token=token, header=header))
        return _result(response)

    async def access(self, rid: str, *, cid: str | None = None, token: Any = None) -> Access:
        """What access a connection with ``token`` has to ``rid`` (denied: raised as ResError)."""
        name, _, query = rid.partition("?")
        result = (await self.request(f"access.{name}", _fields(cid=cid, token=token, query=query or None)))
        value = result.get("result")
        if not isinstance(value, dict):
            raise errors.internal_error("invalid access response")
        return Access(value.get("get") is True, value.get("call") if isinstance(value.get("call"), str) else None)


def _fields(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def _result(response: dict[str, Any]) -> Any:
    resource = response.get("resource")
    if isinstance(resource, dict) and isinstance(resource.get("rid"), str):
        return ResourceResult(resource["rid"])
    return response.get("result")
