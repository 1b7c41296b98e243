"""The ``resgate`` console script: the gateway without twistd."""

from __future__ import annotations

import sys

from twisted.logger import globalLogBeginner, textFileLogObserver
from twisted.python import usage

from resgate.options import Options
from resgate.process import build_gateway


def main(argv: list[str] | None = None) -> None:
    """Run one gateway until SIGINT/SIGTERM or a fatal error; exit with its status."""
    options = Options()
    try:
        options.parseOptions(sys.argv[1:] if argv is None else argv)
    except usage.UsageError as e:
        print(f"resgate: {e}", file=sys.stderr)
        print("Try 'resgate --help' for the list of options.", file=sys.stderr)
        sys.exit(1)
    gateway, exit_status = build_gateway(options)
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)
    reactor = gateway.reactor
    reactor.callWhenRunning(gateway.startService)
    reactor.addSystemEventTrigger("before", "shutdown", gateway.stopService)
    reactor.run()
    sys.exit(exit_status.status)
