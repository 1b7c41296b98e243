"""twistd plugin support: ``twistd -n resgate [options]``.

The options class is shared with the ``resgate`` console script, so both
accept exactly the same flags; the process set-up both share is in
``resgate.process``.
"""

from __future__ import annotations

import atexit

from resgate.options import Options
from resgate.process import build_gateway
from resgate.service import GatewayService

__all__ = ["Options", "makeService"]


def makeService(options: Options) -> GatewayService:
    gateway, exit_on_fatal = build_gateway(options)
    atexit.register(exit_on_fatal.apply)
    return gateway
