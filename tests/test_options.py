"""The command line: Resgate's options, in Go's and in getopt's spellings."""

from __future__ import annotations

import re

import pytest
from twisted.python.usage import UsageError

import resgate
from resgate.options import Options


def parse(*argv: str) -> Options:
    options = Options()
    options.parseOptions(list(argv))
    return options


@pytest.mark.parametrize(
    "short, long, value, expected",
    [
        ("-n", "--nats", "nats://10.0.0.1:4222", "nats://10.0.0.1:4222"),
        ("-i", "--addr", "127.0.0.1", "127.0.0.1"),
        ("-p", "--port", "8081", 8081),
        ("-w", "--wspath", "/ws", "/ws"),
        ("-a", "--apipath", "/rest", "/rest"),
        ("-r", "--reqtimeout", "5000", 5000),
        ("-u", "--headauth", "auth.user.header", "auth.user.header"),
        ("-t", "--wsheadauth", "auth.user.ws", "auth.user.ws"),
        ("-m", "--metricsport", "8090", 8090),
        ("-c", "--config", "/etc/resgate.json", "/etc/resgate.json"),
        (None, "--apiencoding", "jsonflat", "jsonflat"),
        (None, "--putmethod", "put", "put"),
        (None, "--deletemethod", "delete", "delete"),
        (None, "--patchmethod", "patch", "patch"),
        (None, "--resetthrottle", "10", 10),
        (None, "--referencethrottle", "20", 20),
        (None, "--wsmaxunread", "1048576", 1048576),
        (None, "--reconnectmaxdelay", "250", 250),
        (None, "--firstbytetimeout", "5000", 5000),
        (None, "--headtimeout", "20000", 20000),
        (None, "--bodytimeout", "90000", 90000),
        (None, "--keepalivetimeout", "120000", 120000),
        (None, "--tlscert", "cert.pem", "cert.pem"),
        (None, "--tlskey", "key.pem", "key.pem"),
        (None, "--creds", "user.creds", "user.creds"),
        (None, "--natscert", "client.pem", "client.pem"),
        (None, "--natskey", "client.key", "client.key"),
    ],
)
def test_every_parameter_in_every_spelling(
    short: str | None, long: str, value: str, expected: object
) -> None:
    name = long[2:]
    spellings = [
        [long, value],
        [f"{long}={value}"],
        [f"-{name}", value],
        [f"-{name}={value}"],
    ]
    if short:
        spellings += [[short, value], [f"{short}={value}"], [f"{short}{value}"]]
    for argv in spellings:
        options = parse(*argv)
        assert options[name] == expected, argv
        assert options.given == {name}, argv


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["-D"], "debug"),
        (["--debug"], "debug"),
        (["-debug"], "debug"),
        (["-V"], "trace"),
        (["--trace"], "trace"),
        (["-trace"], "trace"),
        (["--tls"], "tls"),
        (["-tls"], "tls"),
        (["--wscompression"], "wscompression"),
        (["-wscompression"], "wscompression"),
        (["--embed-nats"], "embed-nats"),
        (["-embed-nats"], "embed-nats"),
        (["--refusenullorigin"], "refusenullorigin"),
        (["-refusenullorigin=true"], "refusenullorigin"),
    ],
)
def test_flags(argv: list[str], flag: str) -> None:
    options = parse(*argv)
    assert options[flag] is True
    assert options.given == {flag}


def test_flags_not_given_are_false_and_parameters_not_given_are_none() -> None:
    options = parse()
    assert options.given == frozenset()
    for flag in ("debug", "trace", "DV", "tls", "wscompression", "embed-nats", "refusenullorigin"):
        assert options[flag] is False
    for name in ("nats", "port", "config", "natsrootca", "alloworigin", "reqtimeout"):
        assert options[name] is None


@pytest.mark.parametrize("argv", [["-DV"], ["--DV"], ["-D", "-V"], ["-DV", "-D"]])
def test_debug_and_trace_together(argv: list[str]) -> None:
    options = parse(*argv)
    assert options["debug"] is True
    assert options["trace"] is True
    assert {"debug", "trace"} <= options.given


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--tls=false"], False),
        (["-tls=0"], False),
        (["--tls=true"], True),
        (["-tls=T"], True),
        (["--tls", "--tls=false"], False),
        (["--tls=false", "--tls"], True),
    ],
)
def test_go_style_boolean_values_are_explicit_settings(argv: list[str], expected: bool) -> None:
    options = parse(*argv)
    assert options["tls"] is expected
    assert options.given == {"tls"}


def test_go_style_boolean_values_must_be_go_booleans() -> None:
    with pytest.raises(UsageError, match=r'invalid value "yes" for --tls: must be true or false'):
        parse("--tls=yes")


def test_repeated_root_cas_and_origins_accumulate() -> None:
    options = parse(
        "--natsrootca", "a.pem", "-natsrootca=b.pem",
        "--alloworigin", "http://a.example", "-alloworigin", "https://b.example:8443",
    )  # fmt: skip
    assert options["natsrootca"] == ["a.pem", "b.pem"]
    assert options["alloworigin"] == ["http://a.example", "https://b.example:8443"]
    assert options.given == {"natsrootca", "alloworigin"}


def test_a_value_that_looks_like_an_option_is_still_the_value() -> None:
    options = parse("--wspath", "-nats", "-r", "-5", "-a", "--port")
    assert options["wspath"] == "-nats"
    assert options["reqtimeout"] == -5
    assert options["apipath"] == "--port"
    assert options.given == {"wspath", "reqtimeout", "apipath"}


def test_empty_values_are_given() -> None:
    options = parse("--addr=", "-headauth", "")
    assert options["addr"] == ""
    assert options["headauth"] == ""
    assert options.given == {"addr", "headauth"}


def test_getopt_short_groups_still_work() -> None:
    options = parse("-Dp", "9000", "-Vm9001")
    assert options["debug"] and options["trace"]
    assert (options["port"], options["metricsport"]) == (9000, 9001)
    assert options.given == {"debug", "trace", "port", "metricsport"}


def test_short_options_take_attached_values_that_are_no_word() -> None:
    options = parse("-p8080", "-c./resgate.json", "-i127.0.0.1")
    assert (options["port"], options["config"], options["addr"]) == (8080, "./resgate.json", "127.0.0.1")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--bogus"], "unknown option --bogus"),
        (["--bogus=1"], "unknown option --bogus"),
        (["-bogus"], "unknown option -bogus"),
        (["-x"], "unknown option -x"),
        (["-x=1"], "unknown option -x"),
        # getopt would take unique prefixes; Resgate (Go) does not.
        (["--nat", "nats://h"], "unknown option --nat"),
        (["--wscomp"], "unknown option --wscomp"),
        # A typo of a long name after one dash is no short group with a value.
        (["-portt", "9000"], "unknown option -portt"),
        (["-portt=9000"], "unknown option -portt"),
        (["-pp", "1"], "unknown option -pp"),
        (["-nat", "nats://x"], "unknown option -nat"),
        (["-Dx"], "unknown option -Dx"),
        (["-D-"], "unknown option -D-"),
        (["--port"], "option --port needs a value"),
        (["-nats"], "option -nats needs a value"),
        (["extra"], "Wrong number of arguments"),
        (["--", "--port=1"], "Wrong number of arguments"),
        (["-DV", "extra"], "Wrong number of arguments"),
    ],
)
def test_bad_command_lines_are_usage_errors(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        parse(*argv)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--port", "70000"], 'Invalid port "70000": must be less than 65536'),
        (["-p=65536"], 'Invalid port "65536": must be less than 65536'),
        (["-m", "70000"], 'Invalid metrics port "70000": must be less than 65536'),
        (["--port", "abc"], 'invalid value "abc" for --port: must be an integer from 0 to 65535'),
        (["--port", "-1"], 'invalid value "-1" for --port'),
        (["--port", "80.5"], 'invalid value "80.5" for --port'),
        (["--port", ""], 'invalid value "" for --port'),
        (["--metricsport", "x"], 'invalid value "x" for --metricsport'),
        (["-r", "3s"], 'invalid value "3s" for --reqtimeout: must be an integer'),
        (["--resetthrottle", "1e3"], 'invalid value "1e3" for --resetthrottle'),
        (["--referencethrottle", " 5"], 'invalid value " 5" for --referencethrottle'),
        (["--wsmaxunread", "4MiB"], 'invalid value "4MiB" for --wsmaxunread: must be an integer'),
        (["--wsmaxunread", "1e6"], 'invalid value "1e6" for --wsmaxunread: must be an integer'),
        (["--wsmaxunread", "1.5"], 'invalid value "1.5" for --wsmaxunread: must be an integer'),
        (["--reconnectmaxdelay", "500ms"], 'invalid value "500ms" for --reconnectmaxdelay: must be an integer'),
        (["--reconnectmaxdelay", "0.5"], 'invalid value "0.5" for --reconnectmaxdelay: must be an integer'),
        (["--reconnectmaxdelay", ""], 'invalid value "" for --reconnectmaxdelay: must be an integer'),
        (["--bodytimeout", "60s"], 'invalid value "60s" for --bodytimeout: must be an integer'),
        (["--keepalivetimeout", "7.5e4"], 'invalid value "7.5e4" for --keepalivetimeout: must be an integer'),
        (["--firstbytetimeout", ""], 'invalid value "" for --firstbytetimeout: must be an integer'),
        (["--headtimeout", "0x10"], 'invalid value "0x10" for --headtimeout: must be an integer'),
    ],
)
def test_numbers_must_be_integers_in_range(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        parse(*argv)


def test_a_flag_given_no_boolean_is_refused() -> None:
    with pytest.raises(UsageError, match='invalid value "maybe" for -refusenullorigin: must be true or false'):
        parse("-refusenullorigin=maybe")


def test_port_bounds_are_accepted() -> None:
    assert parse("-p", "65535")["port"] == 65535
    assert parse("-p", "0")["port"] == 0


@pytest.mark.parametrize("argv", [["--version"], ["-version"], ["-v"], ["--v"]])
def test_version_prints_resgate_shape_and_exits_0(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit:
        parse(*argv)
    assert exit.value.code == 0
    assert capsys.readouterr().out == (
        f"resgate  v{resgate.__version__}\nprotocol v{resgate.PROTOCOL_VERSION}\n"
    )


@pytest.mark.parametrize("argv", [["--help"], ["-help"], ["-h"], ["-p", "1", "-h"]])
def test_help_lists_every_option_and_exits_0(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit:
        parse(*argv)
    assert exit.value.code == 0
    text = capsys.readouterr().out
    options = Options()
    for name, long in options.synonyms.items():
        if name == "DV":
            assert "  -DV " in text
        elif len(name) == 1:
            assert f"-{name}, --{long} " in text
        else:
            assert f"--{name} " in text or f"--{name}\n" in text, name
    for group in ("Server options:", "Security options:", "Logging options:", "Common options:"):
        assert group in text
    assert "https://resgate.io/docs/" in text.rstrip().splitlines()[-1]
    for default in (
        "(default: nats://127.0.0.1:4222)",
        "(default: 0.0.0.0)",
        "(default: 8080)",
        "(default: /)",
        "(default: /api/)",
        "(default: 3000)",
        "(default: json)",
        "(default: *)",
    ):
        assert default in text


def test_help_false_does_not_show_help() -> None:
    assert parse("--help=false", "-p", "1")["port"] == 1
