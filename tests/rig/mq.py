"""Helpers for tests of resgate.mq: connected clients and a plain nats-py service."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from resgate.mq import MessageClient
from tests.rig.aio import as_deferred, within


async def connected_client(url: str, **options: Any) -> MessageClient:
    client = MessageClient(url, **options)
    await within(client.connect())
    return client


async def service(url: str) -> NatsClient:
    """A plain nats-py connection playing a service (no reconnects)."""
    return await within(as_deferred(nats.connect(url, allow_reconnect=False)))


async def serve(nc: NatsClient, subject: str, handler: Callable[[Msg], Awaitable[None]]) -> None:
    """Answer requests on ``subject``; returns once the server knows the subscription."""
    await within(as_deferred(nc.subscribe(subject, cb=handler)))
    await within(as_deferred(nc.flush()))
