"""The NATS connection as a Bus (nats-py)."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable

from resservice.bus import Callback, Message, NoResponders

#: How long the first connection is retried, so a service may start alongside its nats-server.
DEFAULT_CONNECT_WAIT = 10.0
#: Between two tries of the first connection.
CONNECT_RETRY = 0.25
#: nats-py's bound on one connection attempt.
CONNECT_TIMEOUT = 2.0
#: Between reconnect attempts once connected; reconnecting never gives up.
RECONNECT_WAIT = 0.5
#: The bound on a round trip that proves the server has what was sent.
ROUND_TRIP_TIMEOUT = 5.0

Hook = Callable[..., Awaitable[None] | None]


class NatsBus:
    """A nats-py connection that a Service subscribes and publishes on."""

    def __init__(self, nc: Any) -> None:
        self.nc = nc

    @classmethod
    async def connect(cls, url: str | list[str] = "nats://127.0.0.1:4222", *,
                      wait: float = DEFAULT_CONNECT_WAIT, name: str = "resservice",
                      on_disconnect: Hook | None = None, on_reconnect: Hook | None = None,
                      on_error: Hook | None = None, **options: Any) -> "NatsBus":
        """Connect to NATS, retrying the first connection for ``wait`` seconds.

        ``options`` go to ``nats.connect`` (user, password, tls, creds, ...).
        """
        import nats

        async def relay(hook: Hook | None, *args: Any) -> None:
            if hook is not None:
                result = hook(*args)
                if asyncio.iscoroutine(result):
                    await result

        connected = False

        async def error_cb(error: Exception) -> None:
            # Failed first attempts are retried here quietly; later trouble is reported.
            if connected:
                await relay(on_error, error)

        async def disconnected_cb() -> None:
            await relay(on_disconnect)

        async def reconnected_cb() -> None:
            await relay(on_reconnect)

        options.setdefault("connect_timeout", CONNECT_TIMEOUT)
        options.setdefault("max_reconnect_attempts", -1)
        options.setdefault("reconnect_time_wait", RECONNECT_WAIT)
        deadline = time.monotonic() + wait
        while True:
            try:
                nc = await nats.connect(
                    url, name=name, error_cb=error_cb,
                    disconnected_cb=disconnected_cb, reconnected_cb=reconnected_cb,
                    allow_reconnect=True, **options)
                break
            except Exception as e:
                if time.monotonic() >= deadline:
                    raise ConnectionError(f"cannot connect to NATS at {url}: {e}") from None
                await asyncio.sleep(CONNECT_RETRY)
        connected = True
        return cls(nc)

    @property
    def max_payload(self) -> int:
        return self.nc.max_payload

    async def subscribe(self, subject: str, callback: Callback, queue: str = "") -> Any:
        async def received(msg: Any) -> None:
            # Never awaits the handler: a slow one must not hold up later messages.
            callback(Message(msg.subject, msg.data, msg.reply or None))

        sub = await self.nc.subscribe(subject, queue=queue, cb=received)
        return sub

    async def publish(self, subject: str, data: bytes, reply: str | None = None) -> None:
        await self.nc.publish(subject, data, reply=reply or "")

    async def request(self, subject: str, data: bytes, timeout: float) -> Message:
        import nats.errors

        try:
            msg = await self.nc.request(subject, data, timeout=timeout)
        except nats.errors.NoRespondersError:
            raise NoResponders(f"no responders on {subject}") from None
        except nats.errors.TimeoutError:
            raise asyncio.TimeoutError(f"no reply on {subject} within {timeout}s") from None
        return Message(msg.subject, msg.data, msg.reply or None)

    def new_inbox(self) -> str:
        return self.nc.new_inbox()

    async def flush(self) -> None:
        """Wait until the server has handled everything this connection sent.

        nats-py's flush() writes its PING ahead of commands still in its
        pending buffer, so its PONG does not prove that earlier commands
        arrived. A message to our own inbox goes through that buffer: once
        it is back, every earlier command has reached the server.
        """
        inbox = self.nc.new_inbox()
        back: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def returned(msg: Any) -> None:
            if not back.done():
                back.set_result(None)

        sub = await self.nc.subscribe(inbox, cb=returned)
        try:
            await self.nc.publish(inbox, b"")
            await asyncio.wait_for(back, ROUND_TRIP_TIMEOUT)
        finally:
            await sub.unsubscribe()

    async def close(self) -> None:
        if not self.nc.is_closed:
            await self.nc.drain()
