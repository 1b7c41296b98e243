"""Running a test module over both buses: the in-memory one and a real nats-server.

A module opts in with ``pytestmark = OVER_BOTH_BUSES`` (or adds it to its
list of marks); each of its tests then runs twice, with ids ``memory`` and
``nats``. The ``bus_kind`` fixture in conftest.py picks the bus, and the
``gateway``, ``gateway_factory``, ``fake_service`` and ``bus_address``
fixtures follow it. Other modules run over NATS only.
"""

from __future__ import annotations

import pytest

#: The buses a test can run over, as the ids of its variants.
BUS_KINDS = ("memory", "nats")

OVER_BOTH_BUSES = pytest.mark.parametrize("bus_kind", BUS_KINDS, indirect=True)

#: For tests only the memory bus allows (a fake clock, a lost connection on demand).
ON_MEMORY_BUS = pytest.mark.parametrize("bus_kind", ("memory",), indirect=True)
