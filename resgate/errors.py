"""RES error objects: the one error type that reaches clients and services.

Codes and messages are the protocol's predefined errors (RES client and
service protocols), so clients written for Resgate see the same objects.
"""

from __future__ import annotations

from typing import Any, Self


class ResError(Exception):
    """A RES error: ``code``, ``message`` and optional ``data``."""

    __slots__ = ("code", "message", "data")

    def __init__(self, code: str, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def copy(self) -> Self:
        """A new error like this one, to raise in its stead.

        Raising one shared error object (a module's constant) would chain the
        frames of every raise onto its ``__traceback__``: each raiser's locals
        (resources, connections, whole stopped gateways) alive for good.
        """
        return type(self)(self.code, self.message, self.data)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object form sent on the wire (``data`` only when set)."""
        d: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            d["data"] = self.data
        return d

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ResError):
            return NotImplemented
        return (self.code, self.message, self.data) == (other.code, other.message, other.data)

    def __hash__(self) -> int:
        return hash((self.code, self.message))

    def __repr__(self) -> str:
        return f"ResError({self.code!r}, {self.message!r})"


def internal_error(reason: object) -> ResError:
    """Wrap an unexpected failure as ``system.internalError``."""
    return ResError(CODE_INTERNAL_ERROR, f"Internal error: {reason}")


class InvalidResponse(ResError):
    """A service message that breaks the RES protocol.

    The requester sees ``system.internalError``, as from Resgate; the type
    lets the gateway tell the operator about the service's fault, which a
    service's own error response is not.
    """

    __slots__ = ("reason",)

    def __init__(self, reason: object) -> None:
        super().__init__(CODE_INTERNAL_ERROR, f"Internal error: {reason}")
        self.reason = str(reason)

    def copy(self) -> Self:
        return type(self)(self.reason)


def invalid_response(reason: object) -> InvalidResponse:
    """``system.internalError`` for a service message that breaks the protocol."""
    return InvalidResponse(reason)


CODE_ACCESS_DENIED = "system.accessDenied"
CODE_INTERNAL_ERROR = "system.internalError"
CODE_INVALID_PARAMS = "system.invalidParams"
CODE_INVALID_QUERY = "system.invalidQuery"
CODE_METHOD_NOT_FOUND = "system.methodNotFound"
CODE_NO_SUBSCRIPTION = "system.noSubscription"
CODE_NOT_FOUND = "system.notFound"
CODE_TIMEOUT = "system.timeout"
CODE_INVALID_REQUEST = "system.invalidRequest"
CODE_UNSUPPORTED_PROTOCOL = "system.unsupportedProtocol"
CODE_SUBJECT_TOO_LONG = "system.subjectTooLong"
CODE_DELETED = "system.deleted"
# HTTP only
CODE_BAD_REQUEST = "system.badRequest"
CODE_METHOD_NOT_ALLOWED = "system.methodNotAllowed"
CODE_SERVICE_UNAVAILABLE = "system.serviceUnavailable"
CODE_FORBIDDEN = "system.forbidden"
CODE_NOT_IMPLEMENTED = "system.notImplemented"

ACCESS_DENIED = ResError(CODE_ACCESS_DENIED, "Access denied")
DISPOSING = ResError(CODE_INTERNAL_ERROR, "Internal error: disposing connection")
INTERNAL_ERROR = ResError(CODE_INTERNAL_ERROR, "Internal error")
INVALID_PARAMS = ResError(CODE_INVALID_PARAMS, "Invalid parameters")
INVALID_QUERY = ResError(CODE_INVALID_QUERY, "Invalid query")
METHOD_NOT_FOUND = ResError(CODE_METHOD_NOT_FOUND, "Method not found")
NO_SUBSCRIPTION = ResError(CODE_NO_SUBSCRIPTION, "No subscription")
NOT_FOUND = ResError(CODE_NOT_FOUND, "Not found")
TIMEOUT = ResError(CODE_TIMEOUT, "Request timeout")
INVALID_REQUEST = ResError(CODE_INVALID_REQUEST, "Invalid request")
UNSUPPORTED_PROTOCOL = ResError(CODE_UNSUPPORTED_PROTOCOL, "Unsupported protocol")
SUBJECT_TOO_LONG = ResError(CODE_SUBJECT_TOO_LONG, "Subject too long")
DELETED = ResError(CODE_DELETED, "Deleted")
BAD_REQUEST = ResError(CODE_BAD_REQUEST, "Bad request")
METHOD_NOT_ALLOWED = ResError(CODE_METHOD_NOT_ALLOWED, "Method not allowed")
SERVICE_UNAVAILABLE = ResError(CODE_SERVICE_UNAVAILABLE, "Service unavailable")
FORBIDDEN_ORIGIN = ResError(CODE_FORBIDDEN, "Forbidden origin")
FORBIDDEN = ResError(CODE_FORBIDDEN, "Forbidden")
NOT_IMPLEMENTED = ResError(CODE_NOT_IMPLEMENTED, "Not implemented")


def describe_failure(failure: BaseException) -> str:
    """One line for an operator: the message of a known error, else its type."""
    if isinstance(failure, ResError):
        return failure.message
    text = str(failure).strip()
    return text.splitlines()[0] if text else type(failure).__name__
