"""What the gateway needs from its message bus, as a ``typing.Protocol``.

The cache, the connections and the HTTP API reach NATS only through a
``Bus``, so they run over the nats-py adapter in production and over an
in-memory bus in tests (``tests/rig/memorybus.py``). A bus delivers every
message it receives, replies and subscribed messages alike, to its handler in
the order it received them (docs/design.md, invariant 1), and calls handlers
synchronously on the reactor's thread.
"""

from __future__ import annotations

from typing import Callable, Mapping, Protocol

from twisted.internet.defer import Deferred

from resgate.errors import ResError

#: How a request's outcome is given: ``respond(reply, None)`` or ``respond(None, error)``, once.
Respond = Callable[[bytes | None, ResError | None], None]

#: ``handler(subject, payload)`` for each message of a subscription.
MessageHandler = Callable[[str, bytes], None]


class BusSubscription(Protocol):
    """Interest in a subject (``*`` and ``>`` wildcards allowed)."""

    subject: str

    def unsubscribe(self) -> None:
        """Stop delivery at once; safe to call more than once or after the bus is gone."""


class Bus(Protocol):
    """A connection to the services' message bus.

    There is no automatic reconnect: when an established connection is lost,
    pending requests fail and ``on_lost(reason)`` is called once; the owner
    (``resgate.service.GatewayService``) decides when to ``connect`` again.
    """

    #: Seconds a request waits for its reply before it fails with system.timeout.
    request_timeout: float
    #: Called with a one-line reason when an established connection is lost.
    on_lost: Callable[[str], None] | None

    @property
    def is_connected(self) -> bool:
        """Whether requests can be sent now."""

    @property
    def server(self) -> str | None:
        """The server in use, fit to show (no user, password or token); None while not connected."""

    def connect(self) -> Deferred[None]:
        """Connect; fails with a one-line reason when the bus cannot be reached."""

    def send_request(self, subject: str, payload: bytes, respond: Respond,
                     headers: Mapping[str, str] | None = None) -> int:
        """Send a request; ``respond`` is called once with the reply or a ResError.

        ``headers`` go with the message as NATS headers (trace context);
        without them the message is a plain one. Errors: system.timeout,
        system.notFound (nobody listens), system.subjectTooLong, or an
        internal error when not connected; one found before sending is given
        at once. Returns a token, 0 when nothing was sent.
        """

    def request(self, subject: str, payload: bytes) -> Deferred[bytes]:
        """``send_request`` as a Deferred of the reply; cancelling it forgets the request."""

    def subscribe(self, subject: str, handler: MessageHandler) -> BusSubscription:
        """Subscribe before returning (ahead of any later request); raises ResError."""

    def publish(self, subject: str, payload: bytes, reply: str | None = None) -> None:
        """Queue a message for the bus; raises ResError."""

    def send_now(self) -> None:
        """Send what is queued now rather than once the reactor's turn ends: before long work,
        so that the services answer meanwhile."""

    def has_unread(self) -> bool:
        """Whether messages already received wait to be handled after the one being handled:
        what it makes the gateway write can wait to go out with theirs."""

    def close(self) -> Deferred[None]:
        """Close; pending requests fail with system.internalError (disposing). Idempotent."""
