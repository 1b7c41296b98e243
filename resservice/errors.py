"""RES errors: what a handler raises to answer a request with an error.

The codes are the RES service protocol's predefined ones; a service's own
codes should begin with its name (``library.bookTaken``).
"""

from __future__ import annotations

from typing import Any

CODE_NOT_FOUND = "system.notFound"
CODE_INVALID_PARAMS = "system.invalidParams"
CODE_INVALID_QUERY = "system.invalidQuery"
CODE_INTERNAL_ERROR = "system.internalError"
CODE_METHOD_NOT_FOUND = "system.methodNotFound"
CODE_ACCESS_DENIED = "system.accessDenied"
CODE_TIMEOUT = "system.timeout"


class ResError(Exception):
    """A RES error object: ``code``, ``message`` and optional ``data``.

    Raise it from a handler and the request is answered with it.
    """

    def __init__(self, code: str, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, Any]:
        """The error object as sent on the wire (``data`` only when set)."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error

    @classmethod
    def from_json(cls, value: Any) -> "ResError":
        """The ResError of an error object received from another service."""
        if not isinstance(value, dict) or not isinstance(value.get("code"), str):
            return internal_error("invalid error object")
        message = value.get("message")
        return cls(value["code"], message if isinstance(message, str) else "", value.get("data"))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ResError):
            return NotImplemented
        return (self.code, self.message, self.data) == (other.code, other.message, other.data)

    def __hash__(self) -> int:
        return hash((self.code, self.message))

    def __repr__(self) -> str:
        return f"ResError({self.code!r}, {self.message!r})"


def not_found(message: str = "Not found") -> ResError:
    return ResError(CODE_NOT_FOUND, message)


def invalid_params(message: str = "Invalid parameters", data: Any = None) -> ResError:
    return ResError(CODE_INVALID_PARAMS, message, data)


def invalid_query(message: str = "Invalid query", data: Any = None) -> ResError:
    return ResError(CODE_INVALID_QUERY, message, data)


def method_not_found(message: str = "Method not found") -> ResError:
    return ResError(CODE_METHOD_NOT_FOUND, message)


def access_denied(message: str = "Access denied") -> ResError:
    return ResError(CODE_ACCESS_DENIED, message)


def timeout(message: str = "Request timeout") -> ResError:
    return ResError(CODE_TIMEOUT, message)


def internal_error(reason: object = None) -> ResError:
    """``system.internalError``, naming ``reason`` when given."""
    return ResError(CODE_INTERNAL_ERROR, "Internal error" if reason is None else f"Internal error: {reason}")
