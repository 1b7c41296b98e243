"""What the gateway's work leaves behind is nothing that outlives it.

A raised exception keeps its traceback, and the traceback every frame it
passed through with their locals. Raising one shared error object (a
module's constant) again and again chained each raise's frames onto the
last: a service that kept sending broken responses kept every resource,
connection and request those raises had seen alive, and a test run held
all its stopped gateways. A client that let go of its subscriptions after
its gateway stopped scheduled an eviction timer that held the stopped
gateway until it fired.
"""

from __future__ import annotations

import ast
import importlib
import pathlib
import pkgutil

import pytest
import pytest_twisted
from twisted.internet import reactor

import resgate
from resgate import codec
from resgate.errors import ResError
from tests.rig.aio import WAIT_TIMEOUT, eventually, within
from tests.rig.resources import VERSION_LATEST
from tests.rig.ws import connect_ws

PACKAGE = pathlib.Path(resgate.__file__).parent

BROKEN_GET_RESPONSES = [
    b"not json",
    b"[]",
    b'{"error": "not an object"}',
    b'{"result": {"model": {"a": {"b": 1}}}}',
    b'{"result": {"collection": [[1]]}}',
    b'{"result": null}',
    b'{"result": {}}',
]


def shared_errors() -> dict[str, ResError]:
    """Every ResError a resgate module holds at its top level, by qualified name."""
    found = {}
    for info in pkgutil.walk_packages([str(PACKAGE)], "resgate."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if isinstance(value, ResError):
                found[f"{info.name}.{name}"] = value
    return found


def test_the_package_has_shared_errors_to_check() -> None:
    assert {"resgate.errors.TIMEOUT", "resgate.codec._INVALID_RESPONSE", "resgate.natsbus.NOT_CONNECTED"} \
        <= set(shared_errors())


@pytest.mark.parametrize("payload", BROKEN_GET_RESPONSES)
def test_a_broken_response_raises_a_new_error_each_time(payload: bytes) -> None:
    raised = []
    for _ in range(3):
        with pytest.raises(ResError) as caught:
            codec.decode_get_response(payload)
        raised.append(caught.value)
    assert len({id(e) for e in raised}) == 3
    assert raised[0] == raised[1] == raised[2]
    kept = {name for name, e in shared_errors().items() if name.startswith("resgate.codec.") and e.__traceback__}
    assert kept == set()


def _raised_constants(source: str) -> list[str]:
    """Each ``raise NAME`` and ``raise module.NAME`` of an upper-case name in ``source``: a shared object raised."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Raise) and node.exc is not None:
            target = node.exc
            name = target.id if isinstance(target, ast.Name) else \
                target.attr if isinstance(target, ast.Attribute) else None
            if name is not None and name.lstrip("_").isupper():
                found.append(f"{node.lineno}: raise {ast.unparse(target)}")
    return found


def test_no_module_raises_a_shared_error_itself() -> None:
    found = [f"{path.relative_to(PACKAGE.parent)}:{line}"
             for path in sorted(PACKAGE.rglob("*.py")) for line in _raised_constants(path.read_text())]
    assert found == [], "raise a copy (ResError.copy) instead"


def test_the_check_for_raised_constants_tells_them_from_copies() -> None:
    source = ("def f():\n    raise errors.TIMEOUT\n"
              "def g():\n    raise _BROKEN from None\n"
              "def h():\n    raise _BROKEN.copy()\n"
              "def i(error):\n    raise error\n")
    assert _raised_constants(source) == ["2: raise errors.TIMEOUT", "4: raise _BROKEN"]


def _eviction_timers_of(cache: object) -> list[object]:
    """The pending reactor timers whose callable's closure holds ``cache``."""
    return [call for call in reactor.getDelayedCalls()
            if any(cell.cell_contents is cache for cell in getattr(call.func, "__closure__", None) or ())]


@pytest_twisted.ensureDeferred
async def test_a_stopped_gateway_schedules_no_eviction(gateway_factory, fake_service):
    for rid in ("test.model", "test.other"):
        fake_service.on(f"access.{rid}", lambda r: r.respond({"result": {"get": True}}))
        fake_service.on(f"get.{rid}", lambda r: r.respond({"result": {"model": {"a": 1}}}))
    gateway = await gateway_factory(unsubscribe_delay=60)
    client = await connect_ws(gateway.ws_url)
    await client.request("version", {"protocol": VERSION_LATEST})
    await client.request("subscribe.test.model")
    await client.request("subscribe.test.other")
    await client.request("unsubscribe.test.other")
    assert len(_eviction_timers_of(gateway.cache)) == 1  # the check sees a running gateway's timer

    await gateway.stopService()  # cancels that timer
    # Stopping closes the client, and its subscription goes after the cache stopped.
    await within(client.closed, WAIT_TIMEOUT)
    await eventually(lambda: not gateway.clients.protocols)
    assert _eviction_timers_of(gateway.cache) == []
