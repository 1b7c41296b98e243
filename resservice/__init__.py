"""resservice: write RES services in Python.

A service registers handlers by resource pattern and serves them over NATS::

    import asyncio
    from resservice import Service

    service = Service("example")

    @service.access("model")
    def access(request):
        return True

    @service.model("model")
    def get_model(request):
        return {"message": "Hello, World!"}

    asyncio.run(service.serve("nats://127.0.0.1:4222"))

It needs nats-py; Twisted only for Deferred-returning handlers and for
running inside a Twisted process (``resservice.twisted``). docs/service-library.md
is the guide, docs/service-library-reference.md the reference.
"""

from resservice.bus import Bus, MemoryBus, Message, NoResponders
from resservice.errors import (
    CODE_ACCESS_DENIED, CODE_INTERNAL_ERROR, CODE_INVALID_PARAMS, CODE_INVALID_QUERY, CODE_METHOD_NOT_FOUND,
    CODE_NOT_FOUND, CODE_TIMEOUT, ResError, access_denied, internal_error, invalid_params, invalid_query,
    method_not_found, not_found, timeout)
from resservice.mux import Handler, Mux
from resservice.natsbus import NatsBus
from resservice.request import ACCESS_GRANTED, Access, Request
from resservice.resource import Event, QueryRequest, Resource
from resservice.service import Service
from resservice.values import DELETE, Collection, Data, Model, Ref, ResourceResult, SoftRef, encode

__version__ = "0.1.0"

__all__ = [
    "ACCESS_GRANTED", "Access", "Bus", "CODE_ACCESS_DENIED", "CODE_INTERNAL_ERROR", "CODE_INVALID_PARAMS",
    "CODE_INVALID_QUERY", "CODE_METHOD_NOT_FOUND", "CODE_NOT_FOUND", "CODE_TIMEOUT", "Collection", "DELETE",
    "Data", "Event", "Handler", "MemoryBus", "Message", "Model", "Mux", "NatsBus", "NoResponders",
    "QueryRequest", "Ref", "Request", "ResError", "Resource", "ResourceResult", "Service", "SoftRef",
    "access_denied", "encode", "internal_error", "invalid_params", "invalid_query", "method_not_found",
    "not_found", "timeout",
]
