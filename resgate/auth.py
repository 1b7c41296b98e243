"""What both transports, WebSocket and HTTP, share to authenticate a client.

The header auth request of ``--headauth`` and ``--wsheadauth``, the call
and auth requests whose meta a transport applies, and the ``remoteAddr``
a service learns of the client, spelled as Go's net/http spells it.
"""

from __future__ import annotations

from typing import Any, Callable

from resgate import codec, errors
from resgate.config import ResourceMethod
from resgate.connection import Connection
from resgate.meta import Meta

#: callback(result, resource rid, meta, error) of a call or auth request.
CallCallback = Callable[[Any, "str | None", "Meta | None", "errors.ResError | None"], None]

#: callback(rid, error, meta) of a header auth request.
AuthCallback = Callable[["str | None", "errors.ResError | None", "Meta | None"], None]


def remote_addr(peer: Any) -> str:
    """``host:port`` of a Twisted address, ``[host]:port`` for IPv6 (as Go's net/http).

    Empty for the peer of a Unix socket, which has no address.
    """
    host = getattr(peer, "host", None)
    if host is None:
        return ""
    return f"[{host}]:{peer.port}" if ":" in host else f"{host}:{getattr(peer, 'port', '')}"


def call_service(conn: Connection, subject: str, payload: bytes, callback: CallCallback) -> None:
    """Send a call or auth request with the connection's trace; ``callback`` gets the response's meta as a Meta."""
    conn.cache.call(subject, payload,
                    lambda result, rid, meta, error: callback(result, rid, Meta.decode(meta), error),
                    conn.request_trace)


def header_auth(conn: Connection, method: ResourceMethod, callback: AuthCallback) -> None:
    """The auth request of ``--headauth``/``--wsheadauth``: ``callback(rid, error, meta)``.

    It carries the HTTP request's header, host, remoteAddr and uri (the
    connection's ``http_info``) and ``isHttp``, whatever the transport, as
    Resgate's does; its result is not needed, only the token and meta.
    """
    name, query = codec.split_rid(conn.expand_cid(method.rid))
    payload = codec.create_request(conn.cid, conn.token, query=query, is_http=True, http=conn.http_info)
    call_service(conn, f"auth.{name}.{method.method}", payload,
                 lambda _result, rid, meta, error: callback(rid, error, meta))
