"""Meta: the HTTP status and headers a service sets on an HTTP response (RES 1.2.3).

Access, auth and call responses may carry ``"meta": {"status", "header"}``.
It only counts when the request was made for an HTTP request (``isHttp``) or
a WebSocket upgrade: a 3XX status answers with a redirect and no body, a
4XX/5XX status with an error, and headers are added to the response. The
rules are Resgate's (``codec.Meta``): keys are canonicalized as Go's
net/http does, ``Set-Cookie`` values are appended while other headers
replace, and a few headers the gateway owns are never touched.

Headers come from services and end up on the wire, so a name that is not an
HTTP token or a value holding CR, LF or NUL is dropped (and logged): it
could otherwise split the response.
"""

from __future__ import annotations

import http
import re
from typing import Any

from twisted.logger import Logger

from resgate import errors
from resgate.codec import json_type_name

log = Logger(namespace="resgate.meta")

#: Headers the gateway sets itself; a service's meta never replaces them.
#: Resgate's five, and the ones that frame the body or manage the connection:
#: Go's net/http keeps a response well framed whatever a handler sets, but
#: twisted.web would send, say, Transfer-Encoding next to its own
#: Content-Length, and a client or proxy would read the connection wrong.
PROTECTED_HEADERS = frozenset({
    "Sec-Websocket-Extensions",
    "Sec-Websocket-Protocol",
    "Access-Control-Allow-Credentials",
    "Access-Control-Allow-Origin",
    "Content-Type",
    "Content-Length",
    "Transfer-Encoding",
    # Hop-by-hop (RFC 9110, 7.6.1); Connection can name headers for proxies to drop.
    "Connection",
    "Keep-Alive",
    "Proxy-Connection",
    "Te",
    "Trailer",
    "Upgrade",
})
#: The one header whose values accumulate instead of replacing.
SET_COOKIE = "Set-Cookie"

# RFC 9110 token characters: what a header name may hold.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# A header value must not end the line (CR, LF) or the string (NUL).
_LINE_BREAKING = re.compile(r"[\r\n\x00]")

Header = dict[str, list[str]]


def canonical_header_key(name: str) -> str:
    """``x-custom-header`` -> ``X-Custom-Header``, as Go's CanonicalMIMEHeaderKey."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def merge_header(target: Header, source: Header | None) -> None:
    """Put ``source`` into ``target``: protected headers skipped, Set-Cookie appended."""
    if not source:
        return
    for key, values in source.items():
        if key in PROTECTED_HEADERS:
            continue
        if key == SET_COOKIE:
            target[key] = target.get(key, []) + values
        else:
            target[key] = list(values)


class Meta:
    """A decoded meta object: ``status`` (an int or None) and ``header``."""

    __slots__ = ("status", "header")

    def __init__(self, status: int | None = None, header: Header | None = None) -> None:
        self.status = status
        self.header: Header = header if header is not None else {}

    def __repr__(self) -> str:
        return f"Meta({self.status!r}, {self.header!r})"

    @classmethod
    def decode(cls, raw: Any) -> Meta | None:
        """The Meta of a response's ``meta`` value; None when there is none.

        Protected headers are left out here, so no Meta ever holds one.
        Parts that are not what the protocol allows (a status that is no
        integer, a header that is no list of strings, an unsafe name or
        value) are dropped with a logged error; the rest still applies.
        """
        if raw is None:
            return None
        if not isinstance(raw, dict):
            # Only its kind: a header may carry a cookie or a credential for the
            # client, and errors are logged at every level.
            log.error("Invalid meta object: {kind}", kind=json_type_name(raw))
            return None
        status = raw.get("status")
        if status is not None and type(status) is not int:
            log.error("Invalid meta status: {status!r}", status=status)
            status = None
        return cls(status, _decode_header(raw.get("header")))

    @property
    def is_direct_response(self) -> bool:
        """A 3XX, 4XX or 5XX status: answer at once, make no further request."""
        return self.status is not None and 300 <= self.status < 600

    def merged(self, other: Meta | None) -> Meta:
        """A Meta of this one overridden by ``other`` (a later response wins)."""
        header: Header = {}
        merge_header(header, self.header)
        if other is None:
            return Meta(self.status, header)
        merge_header(header, other.header)
        return Meta(other.status if other.status is not None else self.status, header)

    def without_invalid_status(self, what: str) -> Meta:
        """This Meta, minus a status that cannot end an HTTP request (logged).

        Only 3XX, 4XX and 5XX may replace the response; a 2XX or an
        out-of-range number is a service error.
        """
        if self.status is None or self.is_direct_response:
            return self
        log.error("Invalid {what} meta status: {status}", what=what, status=self.status)
        return Meta(None, self.header)


def merge_meta(first: Meta | None, second: Meta | None) -> Meta | None:
    """``first`` overridden by ``second``; None when neither has meta."""
    if first is None:
        return second
    return first.merged(second)


def _decode_header(raw: Any) -> Header:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        log.error("Invalid meta header: {kind}", kind=json_type_name(raw))
        return {}
    header: Header = {}
    for name, values in raw.items():
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            log.error("Invalid meta header {name!r}: values must be a list of strings", name=name)
            continue
        if not _TOKEN.fullmatch(name):
            log.error("Invalid meta header name {name!r}: dropped", name=name)
            continue
        key = canonical_header_key(name)
        if key in PROTECTED_HEADERS:
            continue
        safe = [v for v in values if not _LINE_BREAKING.search(v)]
        if len(safe) < len(values):
            log.error("Meta header {name} value with CR, LF or NUL: dropped", name=name)
        if safe:
            header[key] = header.get(key, []) + safe
    return header


# --- Direct responses: what a 3XX/4XX/5XX meta status answers with -------------------


def status_error(status: int) -> errors.ResError:
    """The RES error that stands for an HTTP error status (a 4XX/5XX without one)."""
    if 400 <= status < 500:
        if status in (401, 402, 407):
            return errors.ACCESS_DENIED
        if status in (403, 451):
            return errors.FORBIDDEN
        if status in (404, 410):
            return errors.NOT_FOUND
        if status == 405:
            return errors.METHOD_NOT_ALLOWED
        if status == 408:
            return errors.TIMEOUT
        return errors.BAD_REQUEST
    if 500 <= status < 600:
        if status == 501:
            return errors.NOT_IMPLEMENTED
        if status == 503:
            return errors.SERVICE_UNAVAILABLE
        if status == 504:
            return errors.TIMEOUT
    return errors.INTERNAL_ERROR


class DirectResponse:
    """The response a direct meta status calls for: status, headers and body.

    A redirect (3XX) has no body, and gets ``Location: href`` when the
    service referred to a resource and set no Location itself. An error
    status (4XX/5XX) has the service's error, or the one that stands for the
    status, as its body.
    """

    __slots__ = ("status", "header", "error")

    def __init__(self, meta: Meta, href: str, error: errors.ResError | None) -> None:
        self.status: int = meta.status  # type: ignore[assignment]
        self.header: Header = {}
        self.error: errors.ResError | None = None
        if self.status < 400:
            if href and "Location" not in meta.header:
                self.header["Location"] = [href]
        else:
            self.error = error if error is not None else status_error(self.status)
        merge_header(self.header, meta.header)


def reason_phrase(status: int) -> str:
    """The standard reason phrase of ``status``, or a generic one."""
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Status"
