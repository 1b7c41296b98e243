"""Helpers for tests of resgate.natsbus: connected clients and a plain nats-py service."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from resgate.natsbus import NatsBus
from tests.rig.aio import as_deferred, within


async def connected_client(url: str, **options: Any) -> NatsBus:
    client = NatsBus(url, **options)
    await within(client.connect())
    return client


async def service(url: str) -> NatsClient:
    """A plain nats-py connection playing a service (no reconnects)."""
    return await within(as_deferred(nats.connect(url, allow_reconnect=False)))


async def serve(nc: NatsClient, subject: str, handler: Callable[[Msg], Awaitable[None]]) -> None:
    """Answer requests on ``subject``; returns once the server knows the subscription."""
    await within(as_deferred(nc.subscribe(subject, cb=handler)))
    await confirm_subscriptions(nc)


async def confirm_subscriptions(nc: NatsClient) -> None:
    """Return once the server has processed every subscription ``nc`` sent so far.

    nats-py's flush() puts its PING ahead of the commands still queued, so
    its PONG proves nothing about them; a message to our own inbox, queued
    after them, comes back only once the server has processed them.
    """
    inbox = nc.new_inbox()
    echo = await within(as_deferred(nc.subscribe(inbox)))
    await within(as_deferred(nc.publish(inbox, b"")))
    await within(as_deferred(echo.next_msg(timeout=5)))
    await within(as_deferred(echo.unsubscribe()))
