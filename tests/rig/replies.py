"""Tables of request scenarios: how the fake service answers, what the client gets.

A table row names the service's answer to a request as a ``Reply`` (a
function of the ``ServiceRequest``: ``result(value)``, ``error(err)``,
``raw(bytes)``, ``no_reply`` to let the gateway time it out, or
``NO_REQUEST`` where no request may come) and the client's expected
response as ``Result(value)``, ``Error(error)`` or ``ErrorCode(code)``, which
``check_response`` checks.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

from tests.rig.resources import get_response

#: Request timeout (ms) of gateways in scenarios where a request times out.
TIMEOUT_MS = 200

Reply = Callable[[Any], None]


def result(value: Any) -> Reply:
    """Answer ``{"result": value}``."""
    return lambda request: request.respond_result(value)


def error(err: dict) -> Reply:
    """Answer ``{"error": err}``."""
    return lambda request: request.respond({"error": err})


def raw(data: bytes) -> Reply:
    """Answer with these exact bytes."""
    return lambda request: request.respond(data)


def no_reply(request) -> None:
    """Leave the request unanswered so that the gateway times it out."""


def model_get(request) -> None:
    """Answer a get request with test.model."""
    request.respond(get_response("test.model"))


#: The request is not expected at all.
NO_REQUEST = None


async def start_gateway(gateway_factory, *replies: Reply | None):
    """A gateway with a short request timeout (``TIMEOUT_MS``) if any reply is ``no_reply``."""
    if any(r is no_reply for r in replies):
        return await gateway_factory(request_timeout=TIMEOUT_MS)
    return await gateway_factory()


class Result(NamedTuple):
    """The client gets ``{"result": value}`` and no error."""

    value: Any


class Error(NamedTuple):
    """The client gets exactly this error object."""

    error: dict


class ErrorCode(NamedTuple):
    """The client gets an error with this code (``""``: an error without one)."""

    code: str


#: An internal error, whatever its message.
INTERNAL = ErrorCode("system.internalError")


def check_response(response: dict, expected: Result | Error | ErrorCode) -> None:
    """Check a client response against the expected ``Result``, ``Error`` or ``ErrorCode``."""
    if isinstance(expected, Result):
        assert "error" not in response, response
        assert response.get("result") == expected.value, response
    elif isinstance(expected, Error):
        assert response.get("error") == expected.error, response
    else:
        assert "error" in response, response
        assert response["error"].get("code", "") == expected.code, response
