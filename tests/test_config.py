"""Settings: Resgate's defaults, its JSON file and flags, and their validation."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from twisted.python import usage

import resgate.config
from resgate.config import (
    DEFAULT_NATS_URL,
    MAX_CONFIG_FILE_SIZE,
    Config,
    ConfigError,
    ResourceMethod,
)
from resgate.options import Options, config_from_options

RESGATE_KEYS = [
    "natsUrl", "natsCreds", "natsCert", "natsKey", "natsRootCAs", "requestTimeout",
    "bufferSize", "debug", "trace", "addr", "port", "wsPath", "apiPath", "metricsPort",
    "apiEncoding", "headerAuth", "wsHeaderAuth", "allowOrigin", "putMethod", "deleteMethod",
    "patchMethod", "tls", "certFile", "keyFile", "wsCompression", "resetThrottle",
    "referenceThrottle",
]  # fmt: skip


class Loaded:
    """What a command line produced: the config and what went to stderr."""

    def __init__(self, config: Config, stderr: str) -> None:
        self.config = config
        self.stderr = stderr


def load(*argv: str) -> Loaded:
    options = Options()
    options.parseOptions(list(argv))
    stderr = io.StringIO()
    config = config_from_options(options, stderr=stderr)
    return Loaded(config, stderr.getvalue())


def write(tmp_path: Path, content: str | bytes | dict[str, Any]) -> str:
    path = tmp_path / "resgate.json"
    if isinstance(content, dict):
        content = json.dumps(content)
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return str(path)


def load_file(tmp_path: Path, content: str | bytes | dict[str, Any], *argv: str) -> Loaded:
    return load("-c", write(tmp_path, content), *argv)


def config_error(tmp_path: Path, content: str | bytes | dict[str, Any], *argv: str) -> str:
    with pytest.raises(ConfigError) as error:
        load_file(tmp_path, content, *argv)
    message = str(error.value)
    assert "\n" not in message
    return message


# Defaults


def test_without_a_file_or_flags_the_defaults_are_resgates() -> None:
    config = load().config
    assert config == Config()
    assert config.nats_url == "nats://127.0.0.1:4222"
    assert config.request_timeout == 3000
    assert config.buffer_size == 8192
    assert (config.addr, config.port, config.metrics_port) == ("0.0.0.0", 8080, 0)
    assert (config.ws_path, config.api_path, config.api_encoding) == ("/", "/api/", "json")
    assert config.allow_origin == "*"
    assert config.nats_root_cas == []
    assert config.header_auth is None and config.ws_header_auth is None
    assert (config.put_method, config.delete_method, config.patch_method) == (None, None, None)
    assert not (config.tls or config.debug or config.trace or config.ws_compression)
    assert (config.reset_throttle, config.reference_throttle) == (0, 0)
    assert config.embed_nats is False


def test_derived_defaults() -> None:
    config = Config()
    assert config.allowed_origins == ["*"]
    assert config.allow_methods == "GET, HEAD, OPTIONS, POST"
    assert config.header_auth_method is None and config.ws_header_auth_method is None
    assert config.listen_host == "0.0.0.0"
    assert config.scheme == "http"
    assert config.embedded_nats_address is None


# Creating a missing file


def test_a_missing_file_is_created_with_the_effective_settings(tmp_path: Path) -> None:
    path = tmp_path / "resgate.json"
    loaded = load("-c", str(path), "-p", "9000", "--natsrootca", "ca.pem", "-u", "auth.h.m")
    text = path.read_text()
    assert text.startswith('{\n\t"natsUrl": ')
    document = json.loads(text)
    assert list(document) == RESGATE_KEYS
    assert document == {
        "natsUrl": DEFAULT_NATS_URL, "natsCreds": "", "natsCert": "", "natsKey": "",
        "natsRootCAs": ["ca.pem"], "requestTimeout": 3000, "bufferSize": 8192,
        "debug": False, "trace": False, "addr": "0.0.0.0", "port": 9000, "wsPath": "/",
        "apiPath": "/api/", "metricsPort": 0, "apiEncoding": "json",
        "headerAuth": "auth.h.m", "wsHeaderAuth": None, "allowOrigin": "*",
        "putMethod": None, "deleteMethod": None, "patchMethod": None, "tls": False,
        "certFile": "", "keyFile": "", "wsCompression": False, "resetThrottle": 0,
        "referenceThrottle": 0,
    }  # fmt: skip
    assert os.stat(path).st_mode & 0o777 & ~0o664 == 0
    assert loaded.stderr == ""
    assert load("-c", str(path)).config == loaded.config


def test_embed_nats_is_never_written(tmp_path: Path) -> None:
    path = tmp_path / "resgate.json"
    assert load("-c", str(path), "--embed-nats").config.embed_nats
    assert "embed" not in path.read_text().lower()
    assert not load("-c", str(path)).config.embed_nats


def test_an_existing_file_is_not_rewritten(tmp_path: Path) -> None:
    path = write(tmp_path, '{"port": 9000}')
    load("-c", path, "-p", "9001")
    assert Path(path).read_text() == '{"port": 9000}'


def test_an_unwritable_new_file_is_a_warning_as_resgate_carries_on(tmp_path: Path) -> None:
    loaded = load("-c", str(tmp_path / "no-such-dir" / "resgate.json"))
    assert loaded.config == Config()
    assert loaded.stderr.count("\n") == 1
    assert "cannot write config file" in loaded.stderr


def test_an_empty_config_flag_means_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert load("-c", "").config == Config()
    assert list(tmp_path.iterdir()) == []


# Reading the file and precedence


def test_file_values_replace_defaults(tmp_path: Path) -> None:
    config = load_file(
        tmp_path,
        {
            "natsUrl": "nats://10.0.0.1:4222", "natsCreds": "u.creds", "natsCert": "c.pem",
            "natsKey": "c.key", "natsRootCAs": ["ca1.pem", "ca2.pem"], "requestTimeout": 5000,
            "bufferSize": 100, "debug": True, "trace": True, "addr": "127.0.0.1", "port": 9000,
            "wsPath": "/ws", "apiPath": "/rest/", "metricsPort": 9001, "apiEncoding": "jsonFlat",
            "headerAuth": "auth.user.header", "wsHeaderAuth": "auth.user.ws",
            "allowOrigin": "https://B.example;http://a.example:8080", "putMethod": "put",
            "deleteMethod": "delete", "patchMethod": "patch", "tls": True, "certFile": "s.pem",
            "keyFile": "s.key", "wsCompression": True, "resetThrottle": 3,
            "referenceThrottle": 4,
        },
    ).config  # fmt: skip
    assert config.nats_url == "nats://10.0.0.1:4222"
    assert (config.nats_creds, config.nats_cert, config.nats_key) == ("u.creds", "c.pem", "c.key")
    assert config.nats_root_cas == ["ca1.pem", "ca2.pem"]
    assert (config.request_timeout, config.buffer_size) == (5000, 100)
    assert config.debug and config.trace and config.tls and config.ws_compression
    assert (config.addr, config.port, config.metrics_port) == ("127.0.0.1", 9000, 9001)
    assert (config.ws_path, config.api_path, config.api_encoding) == ("/ws", "/rest/", "jsonFlat")
    assert config.header_auth_method == ResourceMethod("auth.user", "header")
    assert config.ws_header_auth_method == ResourceMethod("auth.user", "ws")
    assert config.allowed_origins == ["http://a.example:8080", "https://b.example"]
    assert config.allow_methods == "GET, HEAD, OPTIONS, POST, PUT, DELETE, PATCH"
    assert (config.put_method, config.delete_method, config.patch_method) == (
        "put", "delete", "patch",
    )  # fmt: skip
    assert (config.tls_cert, config.tls_key, config.scheme) == ("s.pem", "s.key", "https")
    assert (config.reset_throttle, config.reference_throttle) == (3, 4)


def test_null_means_not_set_and_unknown_keys_are_ignored(tmp_path: Path) -> None:
    config = load_file(
        tmp_path,
        '{"port": null, "headerAuth": null, "addr": null, "natsRootCAs": null,'
        ' "allowOrigin": null, "colour": "blue", "nested": {"port": 1}}',
    ).config
    assert config == Config()


def test_keys_match_case_insensitively_as_in_go(tmp_path: Path) -> None:
    config = load_file(tmp_path, {"NatsURL": "nats://h:1", "PORT": 9000, "certfile": "x"}).config
    assert (config.nats_url, config.port, config.tls_cert) == ("nats://h:1", 9000, "x")


def test_a_bare_null_file_holds_no_settings(tmp_path: Path) -> None:
    assert load_file(tmp_path, "null").config == Config()


@pytest.mark.parametrize(
    "file, argv, attr, expected",
    [
        ({"port": 9000}, ["-p", "9001"], "port", 9001),
        ({"port": 9000}, ["--port", "8080"], "port", 8080),
        ({"natsUrl": "nats://h:1"}, ["-nats", "nats://k:2"], "nats_url", "nats://k:2"),
        ({"apiEncoding": "jsonflat"}, ["--apiencoding", "json"], "api_encoding", "json"),
        ({"requestTimeout": 5000}, ["-r", "3000"], "request_timeout", 3000),
        ({"requestTimeout": 5000}, ["-r", "0"], "request_timeout", 3000),
        ({"tls": True, "certFile": "c", "keyFile": "k"}, ["--tls=false"], "tls", False),
        ({"debug": False}, ["-DV"], "debug", True),
        ({"trace": False}, ["-DV"], "trace", True),
        ({"addr": "127.0.0.1"}, ["--addr", ""], "addr", ""),
        ({"addr": "127.0.0.1"}, ["-i", "0.0.0.0"], "addr", "0.0.0.0"),
        ({"headerAuth": "a.b"}, ["--headauth", ""], "header_auth", None),
        ({"putMethod": "put"}, ["--putmethod", ""], "put_method", None),
        ({"resetThrottle": 5}, ["--resetthrottle", "0"], "reset_throttle", 0),
        ({"certFile": "a"}, ["--tlscert", ""], "tls_cert", ""),
        ({"natsRootCAs": ["a", "b"]}, ["--natsrootca", "c"], "nats_root_cas", ["c"]),
        (
            {"natsRootCAs": ["a"]},
            ["--natsrootca", "b", "--natsrootca", "c"],
            "nats_root_cas",
            ["b", "c"],
        ),
        (
            {"allowOrigin": "http://a"},
            ["--alloworigin", "http://c", "--alloworigin", "http://b"],
            "allow_origin",
            "http://c;http://b",
        ),
        ({"wsPath": "/ws"}, ["-w", ""], "ws_path", "/"),
        # Resgate lets a zero port flag leave the file's port alone.
        ({"port": 9000}, ["-p", "0"], "port", 9000),
        ({"metricsPort": 9001}, ["-m", "0"], "metrics_port", 9001),
    ],
)
def test_flags_given_override_the_file(
    tmp_path: Path, file: dict[str, Any], argv: list[str], attr: str, expected: object
) -> None:
    assert getattr(load_file(tmp_path, file, *argv).config, attr) == expected


def test_flags_not_given_leave_the_file_alone(tmp_path: Path) -> None:
    config = load_file(tmp_path, {"port": 9000, "debug": True, "natsRootCAs": ["a"]}, "-V").config
    assert (config.port, config.debug, config.trace, config.nats_root_cas) == (
        9000, True, True, ["a"],
    )  # fmt: skip


@pytest.mark.parametrize(
    "key, attr, default",
    [
        ("natsUrl", "nats_url", DEFAULT_NATS_URL),
        ("requestTimeout", "request_timeout", 3000),
        ("bufferSize", "buffer_size", 8192),
        ("port", "port", 8080),
        ("wsPath", "ws_path", "/"),
        ("apiPath", "api_path", "/api/"),
        ("apiEncoding", "api_encoding", "json"),
    ],
)
def test_zero_values_in_the_file_mean_the_default(
    tmp_path: Path, key: str, attr: str, default: object
) -> None:
    zero: object = 0 if isinstance(default, int) else ""
    assert getattr(load_file(tmp_path, {key: zero}).config, attr) == default


def test_allow_origins_from_flags_are_lowercased_and_sorted() -> None:
    config = load("--alloworigin", "https://Z.example", "--alloworigin", "HTTP://a.example").config
    assert config.allow_origin == "https://Z.example;HTTP://a.example"
    assert config.allowed_origins == ["http://a.example", "https://z.example"]


# Seconds deprecation


@pytest.mark.parametrize("seconds", [1, 5, 10])
def test_a_request_timeout_of_ten_or_less_is_read_as_seconds(tmp_path: Path, seconds: int) -> None:
    loaded = load_file(tmp_path, {"requestTimeout": seconds})
    assert loaded.config.request_timeout == seconds * 1000
    assert loaded.stderr.count("\n") == 1
    assert "[DEPRECATED] requestTimeout" in loaded.stderr
    assert str(tmp_path / "resgate.json") in loaded.stderr
    assert str(seconds * 1000) in loaded.stderr


def test_the_seconds_rule_applies_to_the_flag_too() -> None:
    loaded = load("-r", "2")
    assert loaded.config.request_timeout == 2000
    assert "--reqtimeout" in loaded.stderr


def test_a_request_timeout_above_ten_is_milliseconds(tmp_path: Path) -> None:
    loaded = load_file(tmp_path, {"requestTimeout": 11})
    assert loaded.config.request_timeout == 11
    assert loaded.stderr == ""


# Derived values


@pytest.mark.parametrize(
    "api_path, expected", [("/api", "/api/"), ("/api/", "/api/"), ("/", "/"), ("", "/")]
)
def test_api_path_gets_its_trailing_slash(api_path: str, expected: str) -> None:
    assert Config(api_path=api_path).api_path == expected


@pytest.mark.parametrize(
    "methods, expected",
    [
        ({"put_method": "p"}, "GET, HEAD, OPTIONS, POST, PUT"),
        ({"delete_method": "d"}, "GET, HEAD, OPTIONS, POST, DELETE"),
        ({"patch_method": "p"}, "GET, HEAD, OPTIONS, POST, PATCH"),
        ({"patch_method": "p", "put_method": "q"}, "GET, HEAD, OPTIONS, POST, PUT, PATCH"),
    ],
)
def test_allow_methods_grow_with_mapped_methods(methods: dict[str, str], expected: str) -> None:
    assert Config(**methods).allow_methods == expected


@pytest.mark.parametrize(
    "addr, host",
    [
        ("", ""),
        ("0.0.0.0", "0.0.0.0"),
        ("127.0.0.1", "127.0.0.1"),
        ("::1", "::1"),
        ("0:0:0:0:0:0:0:1", "::1"),
        ("::ffff:127.0.0.1", "127.0.0.1"),
        ("::", "::"),
    ],
)
def test_listen_host(addr: str, host: str) -> None:
    assert Config(addr=addr).listen_host == host


def test_header_auth_splits_at_the_last_dot() -> None:
    config = Config(header_auth="auth.user.jwt.login", ws_header_auth="auth.ws")
    assert config.header_auth_method == ResourceMethod("auth.user.jwt", "login")
    assert config.ws_header_auth_method == ResourceMethod("auth", "ws")


@pytest.mark.parametrize(
    "url, address",
    [
        ("nats://127.0.0.1:4333", ("127.0.0.1", 4333)),
        ("nats://localhost", ("localhost", 4222)),
        ("nats://[::1]:5222", ("::1", 5222)),
    ],
)
def test_embedded_nats_listens_on_the_nats_url(url: str, address: tuple[str, int]) -> None:
    assert Config(nats_url=url, embed_nats=True).embedded_nats_address == address


def test_port_zero_is_allowed_when_built_directly() -> None:
    assert Config(port=0).port == 0


def test_replace_validates_again() -> None:
    config = Config(port=0)
    assert dataclasses.replace(config, api_path="/x").api_path == "/x/"
    with pytest.raises(ConfigError, match="invalid port 70000: "):
        dataclasses.replace(config, port=70000)


# Validation


@pytest.mark.parametrize(
    "file, expected",
    [
        ({"apiEncoding": "xml"}, 'invalid apiEncoding "xml" in {file}: must be json or jsonflat'),
        ({"port": 70000}, "invalid port 70000 in {file}: must be an integer from 0 to 65535"),
        ({"port": -1}, "invalid port -1 in {file}: must be an integer from 0 to 65535"),
        ({"port": "abc"}, 'invalid port "abc" in {file}: must be an integer from 0 to 65535'),
        ({"port": 80.0}, "invalid port 80.0 in {file}: must be an integer"),
        ({"port": True}, "invalid port true in {file}: must be an integer"),
        ({"metricsPort": 65536}, "invalid metricsPort 65536 in {file}: must be an integer"),
        ({"metricsPort": "x"}, 'invalid metricsPort "x" in {file}: must be an integer'),
        ({"metricsPort": 8080}, "invalid metricsPort 8080 in {file}: must differ from port 8080"),
        ({"tls": "yes"}, 'invalid tls "yes" in {file}: must be true or false'),
        ({"debug": 1}, "invalid debug 1 in {file}: must be true or false"),
        ({"natsRootCAs": "x"}, 'invalid natsRootCAs "x" in {file}: must be a list of strings'),
        ({"natsRootCAs": [1]}, "invalid natsRootCAs [1] in {file}: must be a list of strings"),
        ({"natsUrl": 4222}, "invalid natsUrl 4222 in {file}: must be a string"),
        ({"headerAuth": ["a.b"]}, 'invalid headerAuth ["a.b"] in {file}: must be a string'),
        ({"requestTimeout": -1}, "invalid requestTimeout -1 in {file}: must not be negative"),
        ({"requestTimeout": "3000"}, "invalid requestTimeout \"3000\" in {file}: must be an"),
        ({"bufferSize": -5}, "invalid bufferSize -5 in {file}: must not be negative"),
        ({"resetThrottle": -1}, "invalid resetThrottle -1 in {file}: must not be negative"),
        ({"referenceThrottle": -2}, "invalid referenceThrottle -2 in {file}: must not be"),
        ({"requestTimeout": 2**63}, f"invalid requestTimeout {2**63} in {{file}}: must be at"),
        ({"tls": True}, "tls is enabled in {file} but certFile is not set"),
        ({"tls": True, "certFile": "c"}, "tls is enabled in {file} but keyFile is not set"),
        ({"natsCert": "c"}, "natsCert is set in {file} but natsKey is not"),
        ({"natsKey": "k"}, "natsKey is set in {file} but natsCert is not"),
        ({"allowOrigin": ""}, 'invalid allowOrigin "" in {file}: an origin is empty'),
        ({"allowOrigin": ";http://a"}, 'invalid allowOrigin ";http://a" in {file}: an origin'),
        ({"allowOrigin": "http://a;*"}, "invalid allowOrigin \"http://a;*\" in {file}: * must"),
        ({"allowOrigin": "*;*"}, 'invalid allowOrigin "*;*" in {file}: * must not be combined'),
        ({"allowOrigin": "http://a/b"}, '"http://a/b" is not a bare origin'),
        ({"allowOrigin": "http://a?q"}, '"http://a?q" is not a bare origin'),
        ({"allowOrigin": "http://a#f"}, '"http://a#f" is not a bare origin'),
        ({"allowOrigin": "http://u@a"}, '"http://u@a" is not a bare origin'),
        ({"allowOrigin": "http://a:b"}, '"http://a:b" is not a bare origin'),
        ({"allowOrigin": "a.example"}, '"a.example" is not a bare origin'),
        ({"allowOrigin": "localhost:80"}, '"localhost:80" is not a bare origin'),
        ({"allowOrigin": "http://"}, '"http://" is not a bare origin'),
        ({"headerAuth": "auth"}, 'invalid headerAuth "auth" in {file}: must be a resource method'),
        ({"headerAuth": "auth."}, 'invalid headerAuth "auth." in {file}: must be a resource'),
        ({"headerAuth": "a.b?q"}, 'invalid headerAuth "a.b?q" in {file}: must be a resource'),
        ({"headerAuth": ""}, 'invalid headerAuth "" in {file}: must be a resource method'),
        ({"wsHeaderAuth": "a.*"}, 'invalid wsHeaderAuth "a.*" in {file}: must be a resource'),
        ({"putMethod": "a.b"}, 'invalid putMethod "a.b" in {file}: must be a call method name'),
        ({"deleteMethod": ""}, 'invalid deleteMethod "" in {file}: must be a call method name'),
        ({"patchMethod": "p>"}, 'invalid patchMethod "p>" in {file}: must be a call method'),
        ({"addr": "127.0.0"}, 'invalid addr "127.0.0" in {file}: must be empty or an IPv4 or'),
        ({"addr": "localhost"}, 'invalid addr "localhost" in {file}: must be empty or an IPv4'),
        ({"addr": "fe80::1%eth0"}, 'invalid addr "fe80::1%eth0" in {file}: must be empty'),
    ],
)
def test_invalid_file_settings_name_the_setting_and_the_file(
    tmp_path: Path, file: dict[str, Any], expected: str
) -> None:
    message = config_error(tmp_path, file)
    assert expected.format(file=tmp_path / "resgate.json") in message


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--apiencoding", "xml"], 'invalid apiEncoding "xml" from --apiencoding: must be json'),
        (["-p", "9000", "-m", "9000"], "invalid metricsPort 9000 from --metricsport: must differ"),
        (["--tls"], "tls is enabled from --tls but certFile is not set: set certFile or --tlscert"),
        (["--natskey", "k"], "natsKey is set from --natskey but natsCert is not"),
        (["--alloworigin", "*", "--alloworigin", "http://a"], "* must not be combined"),
        (["-u", "nodot"], 'invalid headerAuth "nodot" from --headauth: must be a resource'),
        (["-t", "a b.c"], 'invalid wsHeaderAuth "a b.c" from --wsheadauth: must be a resource'),
        (["--deletemethod", "d.e"], 'invalid deleteMethod "d.e" from --deletemethod: must be'),
        (["-i", "::g"], 'invalid addr "::g" from --addr: must be empty or an IPv4 or IPv6'),
        (["-r", "-5"], "invalid requestTimeout -5 from --reqtimeout: must not be negative"),
        (["--resetthrottle", "-1"], "invalid resetThrottle -1 from --resetthrottle: must not"),
        (["--embed-nats", "-n", "nats://example.com:4222"], 'invalid natsUrl "nats://example'),
        (["--embed-nats", "-n", "nats://127.0.0.1:1,nats://127.0.0.1:2"], "--embed-nats needs"),
        (["--embed-nats", "-n", "tls://127.0.0.1:4222"], "--embed-nats needs one nats://"),
    ],
)
def test_invalid_flag_settings_name_the_setting_and_the_flag(
    argv: list[str], expected: str
) -> None:
    with pytest.raises(ConfigError) as error:
        load(*argv)
    assert expected in str(error.value)
    assert "\n" not in str(error.value)


def test_a_file_error_names_the_flag_when_a_flag_overrode_the_file(tmp_path: Path) -> None:
    message = config_error(tmp_path, {"apiEncoding": "jsonflat"}, "--apiencoding", "yaml")
    assert message == 'invalid apiEncoding "yaml" from --apiencoding: must be json or jsonflat'


def test_an_invalid_configuration_is_not_written(tmp_path: Path) -> None:
    path = tmp_path / "resgate.json"
    with pytest.raises(ConfigError):
        load("-c", str(path), "--putmethod", "a.b")
    assert not path.exists()


def test_direct_creation_errors_name_no_source() -> None:
    with pytest.raises(ConfigError) as error:
        Config(api_encoding="xml")
    assert str(error.value) == 'invalid apiEncoding "xml": must be json or jsonflat'


def test_api_encoding_is_case_insensitive_as_in_resgate() -> None:
    assert Config(api_encoding="JSONFlat").api_encoding == "JSONFlat"


def test_long_values_are_shortened_in_messages(tmp_path: Path) -> None:
    message = config_error(tmp_path, {"apiEncoding": "x" * 10_000})
    assert len(message) < 300


# wsMaxUnread: the bound on what a WebSocket client leaves unread (ours)


def test_ws_max_unread_defaults_to_4_mib_and_is_not_written(tmp_path: Path) -> None:
    path = tmp_path / "resgate.json"
    assert load("-c", str(path)).config.ws_max_unread == 4 * 1024 * 1024
    assert "wsMaxUnread" not in json.loads(path.read_text())


@pytest.mark.parametrize(
    "file, argv, expected",
    [
        ({"wsMaxUnread": 1048576}, [], 1048576),
        ({"wsmaxunread": 65536}, [], 65536),
        ({"wsMaxUnread": 1048576}, ["--wsmaxunread", "2097152"], 2097152),
        ({}, ["-wsmaxunread=1073741824"], 1073741824),
        ({"wsMaxUnread": 0}, [], 4 * 1024 * 1024),
        ({"wsMaxUnread": 1048576}, ["--wsmaxunread", "0"], 4 * 1024 * 1024),
        ({"wsMaxUnread": None}, [], 4 * 1024 * 1024),
    ],
)
def test_ws_max_unread_from_the_file_and_the_flag(
    tmp_path: Path, file: dict[str, Any], argv: list[str], expected: int
) -> None:
    assert load_file(tmp_path, file, *argv).config.ws_max_unread == expected


def test_a_created_file_holds_ws_max_unread_when_it_is_not_the_default(tmp_path: Path) -> None:
    path = tmp_path / "resgate.json"
    loaded = load("-c", str(path), "--wsmaxunread", "131072")
    document = json.loads(path.read_text())
    assert list(document) == [*RESGATE_KEYS, "wsMaxUnread"]
    assert document["wsMaxUnread"] == 131072
    assert load("-c", str(path)).config == loaded.config


@pytest.mark.parametrize(
    "file, expected",
    [
        ({"wsMaxUnread": -1}, "invalid wsMaxUnread -1 in {file}: must not be negative"),
        ({"wsMaxUnread": "4MiB"}, 'invalid wsMaxUnread "4MiB" in {file}: must be an integer'),
        ({"wsMaxUnread": 1.5e6}, "invalid wsMaxUnread 1500000.0 in {file}: must be an integer"),
        ({"wsMaxUnread": True}, "invalid wsMaxUnread true in {file}: must be an integer"),
        ({"wsMaxUnread": [65536]}, "invalid wsMaxUnread [65536] in {file}: must be an integer"),
        ({"wsMaxUnread": 65535}, "invalid wsMaxUnread 65535 in {file}: must be from 65536 (64"),
        ({"wsMaxUnread": 2**30 + 1}, f"invalid wsMaxUnread {2**30 + 1} in {{file}}: must be"),
        ({"wsMaxUnread": 2**63}, f"invalid wsMaxUnread {2**63} in {{file}}: must be at most"),
    ],
)
def test_invalid_ws_max_unread_in_the_file(
    tmp_path: Path, file: dict[str, Any], expected: str
) -> None:
    assert expected.format(file=tmp_path / "resgate.json") in config_error(tmp_path, file)


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--wsmaxunread", "-1"], "invalid wsMaxUnread -1 from --wsmaxunread: must not be negative"),
        (["--wsmaxunread", "1"], "invalid wsMaxUnread 1 from --wsmaxunread: must be from 65536"),
        (
            ["--wsmaxunread", str(2**40)],
            f"invalid wsMaxUnread {2**40} from --wsmaxunread: must be from 65536 (64 KiB)"
            " to 1073741824 (1 GiB) bytes",
        ),
    ],
)
def test_invalid_ws_max_unread_from_the_flag(argv: list[str], expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        load(*argv)
    assert expected in str(error.value)


def test_ws_max_unread_is_checked_on_direct_creation() -> None:
    with pytest.raises(ConfigError, match="invalid wsMaxUnread 0: must be from 65536"):
        Config(ws_max_unread=0)


# wsDrainTimeout: how long a WebSocket client's backlog may take to drain (ours)


def test_ws_drain_timeout_defaults_to_30_s_and_is_written_only_when_set(tmp_path: Path) -> None:
    path = tmp_path / "resgate.json"
    assert load("-c", str(path)).config.ws_drain_timeout == 30
    assert "wsDrainTimeout" not in json.loads(path.read_text())
    other = tmp_path / "other.json"
    loaded = load("-c", str(other), "--wsdraintimeout", "5")
    assert json.loads(other.read_text())["wsDrainTimeout"] == 5
    assert load("-c", str(other)).config == loaded.config


@pytest.mark.parametrize(
    "file, argv, expected",
    [
        ({"wsDrainTimeout": 10}, [], 10),
        ({"wsdraintimeout": 1}, [], 1),
        ({"wsDrainTimeout": 10}, ["--wsdraintimeout", "20"], 20),
        ({}, ["-wsdraintimeout=3600"], 3600),
        ({"wsDrainTimeout": 0}, [], 30),
        ({"wsDrainTimeout": 10}, ["--wsdraintimeout", "0"], 30),
        ({"wsDrainTimeout": None}, [], 30),
    ],
)
def test_ws_drain_timeout_from_the_file_and_the_flag(
    tmp_path: Path, file: dict[str, Any], argv: list[str], expected: int
) -> None:
    assert load_file(tmp_path, file, *argv).config.ws_drain_timeout == expected


@pytest.mark.parametrize(
    "file, expected",
    [
        ({"wsDrainTimeout": -1}, "invalid wsDrainTimeout -1 in {file}: must not be negative"),
        ({"wsDrainTimeout": "30s"}, 'invalid wsDrainTimeout "30s" in {file}: must be an integer'),
        ({"wsDrainTimeout": 2.5}, "invalid wsDrainTimeout 2.5 in {file}: must be an integer"),
        ({"wsDrainTimeout": False}, "invalid wsDrainTimeout false in {file}: must be an integer"),
        ({"wsDrainTimeout": [30]}, "invalid wsDrainTimeout [30] in {file}: must be an integer"),
        ({"wsDrainTimeout": 3601}, "invalid wsDrainTimeout 3601 in {file}: must be from 1 to 3600 seconds"),
        ({"wsDrainTimeout": 2**63}, f"invalid wsDrainTimeout {2**63} in {{file}}: must be at most"),
    ],
)
def test_invalid_ws_drain_timeout_in_the_file(tmp_path: Path, file: dict[str, Any], expected: str) -> None:
    assert expected.format(file=tmp_path / "resgate.json") in config_error(tmp_path, file)


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--wsdraintimeout", "-5"], "invalid wsDrainTimeout -5 from --wsdraintimeout: must not be negative"),
        (["--wsdraintimeout", "1e3"], 'invalid value "1e3" for --wsdraintimeout: must be an integer'),
        (["--wsdraintimeout", "9" * 40], "from --wsdraintimeout: must be"),
        (["--wsdraintimeout", "86400"],
         "invalid wsDrainTimeout 86400 from --wsdraintimeout: must be from 1 to 3600 seconds"),
    ],
)
def test_invalid_ws_drain_timeout_from_the_flag(argv: list[str], expected: str) -> None:
    with pytest.raises((ConfigError, usage.UsageError)) as error:
        load(*argv)
    assert expected in str(error.value)


# reconnectMaxDelay: the longest wait between NATS reconnect attempts (ours)


def test_reconnect_max_delay_defaults_to_500_ms_and_is_not_written(tmp_path: Path) -> None:
    path = tmp_path / "resgate.json"
    assert load("-c", str(path)).config.reconnect_max_delay == 500
    assert "reconnectMaxDelay" not in json.loads(path.read_text())


@pytest.mark.parametrize(
    "file, argv, expected",
    [
        ({"reconnectMaxDelay": 250}, [], 250),
        ({"reconnectmaxdelay": 50}, [], 50),
        ({"reconnectMaxDelay": 250}, ["--reconnectmaxdelay", "800"], 800),
        ({}, ["-reconnectmaxdelay=60000"], 60000),
        ({"reconnectMaxDelay": 0}, [], 500),
        ({"reconnectMaxDelay": 250}, ["--reconnectmaxdelay", "0"], 500),
        ({"reconnectMaxDelay": None}, [], 500),
    ],
)
def test_reconnect_max_delay_from_the_file_and_the_flag(
    tmp_path: Path, file: dict[str, Any], argv: list[str], expected: int
) -> None:
    assert load_file(tmp_path, file, *argv).config.reconnect_max_delay == expected


def test_a_created_file_holds_reconnect_max_delay_when_it_is_not_the_default(tmp_path: Path) -> None:
    path = tmp_path / "resgate.json"
    loaded = load("-c", str(path), "--reconnectmaxdelay", "200")
    document = json.loads(path.read_text())
    assert list(document) == [*RESGATE_KEYS, "reconnectMaxDelay"]
    assert document["reconnectMaxDelay"] == 200
    assert load("-c", str(path)).config == loaded.config


@pytest.mark.parametrize(
    "file, expected",
    [
        ({"reconnectMaxDelay": -1}, "invalid reconnectMaxDelay -1 in {file}: must not be negative"),
        ({"reconnectMaxDelay": "500ms"}, 'invalid reconnectMaxDelay "500ms" in {file}: must be an integer'),
        ({"reconnectMaxDelay": 0.5}, "invalid reconnectMaxDelay 0.5 in {file}: must be an integer"),
        ({"reconnectMaxDelay": True}, "invalid reconnectMaxDelay true in {file}: must be an integer"),
        ({"reconnectMaxDelay": [500]}, "invalid reconnectMaxDelay [500] in {file}: must be an integer"),
        ({"reconnectMaxDelay": 49}, "invalid reconnectMaxDelay 49 in {file}: must be from 50 to 60000"),
        ({"reconnectMaxDelay": 60001}, "invalid reconnectMaxDelay 60001 in {file}: must be from 50"),
        ({"reconnectMaxDelay": 2**63}, f"invalid reconnectMaxDelay {2**63} in {{file}}: must be at most"),
    ],
)
def test_invalid_reconnect_max_delay_in_the_file(
    tmp_path: Path, file: dict[str, Any], expected: str
) -> None:
    assert expected.format(file=tmp_path / "resgate.json") in config_error(tmp_path, file)


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--reconnectmaxdelay", "-1"], "invalid reconnectMaxDelay -1 from --reconnectmaxdelay: must not be negative"),
        (["--reconnectmaxdelay", "10"], "invalid reconnectMaxDelay 10 from --reconnectmaxdelay: must be from 50"),
        (
            ["-reconnectmaxdelay", str(2**40)],
            f"invalid reconnectMaxDelay {2**40} from --reconnectmaxdelay: must be from 50 to 60000 milliseconds",
        ),
    ],
)
def test_invalid_reconnect_max_delay_from_the_flag(argv: list[str], expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        load(*argv)
    assert expected in str(error.value)


def test_reconnect_max_delay_is_checked_on_direct_creation() -> None:
    with pytest.raises(ConfigError, match="invalid reconnectMaxDelay 0: must be from 50"):
        Config(reconnect_max_delay=0)


# Hostile and broken files


@pytest.mark.parametrize(
    "content, expected",
    [
        ("[]", "must hold a JSON object, not an array"),
        ('"x"', "must hold a JSON object, not a string"),
        ("42", "must hold a JSON object, not a number"),
        ("true", "must hold a JSON object, not a boolean"),
        ("", "cannot parse config file {file}: Expecting value at line 1, column 1"),
        ('{\n  "port": 8080\n  "addr": ""\n}', "Expecting ',' delimiter at line 3, column 3"),
        ('{"port": 8080,}', "at line 1, column 15"),
        ('{"port": 8080} x', "Extra data at line 1, column 16"),
        ('{"x": NaN}', "cannot parse config file {file}: NaN is not a JSON value"),
        ('{"x": -Infinity}', "-Infinity is not a JSON value"),
        ('{"port": ' + "9" * 5000 + "}", "has too many digits"),
        ("[" * 100_000 + "]" * 100_000, "cannot parse config file {file}: JSON nested too deeply"),
        ('{"a":' * 100_000 + "1" + "}" * 100_000, "JSON nested too deeply"),
        ("\ufeff{}", "cannot parse config file {file}: Unexpected UTF-8 BOM"),
        (b'{"natsUrl": "nats://\xff"}', "config file {file} is not UTF-8: byte 0xff at offset 20"),
        (b"\xfe\xff\x00{\x00}", "is not UTF-8: byte 0xfe at offset 0"),
        (b" " * (MAX_CONFIG_FILE_SIZE + 1), f"is larger than {MAX_CONFIG_FILE_SIZE} bytes"),
    ],
)
def test_broken_files_are_one_line_config_errors(
    tmp_path: Path, content: str | bytes, expected: str
) -> None:
    message = config_error(tmp_path, content)
    assert expected.format(file=tmp_path / "resgate.json") in message


def test_a_file_of_the_size_limit_is_read(tmp_path: Path) -> None:
    content = '{"port": 9000}'.ljust(MAX_CONFIG_FILE_SIZE)
    assert load_file(tmp_path, content).config.port == 9000


def test_a_directory_is_an_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"cannot read config file {tmp_path}: "):
        load("-c", str(tmp_path))


def test_an_unreadable_file_is_a_config_error(tmp_path: Path, monkeypatch) -> None:
    # chmod cannot keep root (CI's user) out, so the refusal is the OS error itself.
    path = write(tmp_path, "{}")

    def refuse(file, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(file))

    monkeypatch.setattr(resgate.config, "open", refuse, raising=False)
    with pytest.raises(ConfigError, match=f"cannot read config file {path}: Permission denied"):
        load("-c", path)


# The HTTP time bounds (ours): firstByteTimeout, headTimeout, bodyTimeout, keepAliveTimeout

HTTP_TIMEOUTS = [
    pytest.param("firstByteTimeout", "firstbytetimeout", "first_byte_timeout", 10_000, id="firstByteTimeout"),
    pytest.param("headTimeout", "headtimeout", "head_timeout", 30_000, id="headTimeout"),
    pytest.param("bodyTimeout", "bodytimeout", "body_timeout", 60_000, id="bodyTimeout"),
    pytest.param("keepAliveTimeout", "keepalivetimeout", "keep_alive_timeout", 75_000, id="keepAliveTimeout"),
]


@pytest.mark.parametrize("key, flag, attr, default", HTTP_TIMEOUTS)
def test_http_timeouts_default_and_are_not_written(tmp_path: Path, key: str, flag: str, attr: str,
                                                    default: int) -> None:
    path = tmp_path / "resgate.json"
    assert getattr(load("-c", str(path)).config, attr) == default
    assert key not in json.loads(path.read_text())


@pytest.mark.parametrize("key, flag, attr, default", HTTP_TIMEOUTS)
def test_http_timeouts_from_the_file_and_the_flag(tmp_path: Path, key: str, flag: str, attr: str,
                                                  default: int) -> None:
    assert getattr(load_file(tmp_path, {key: 250}).config, attr) == 250
    assert getattr(load_file(tmp_path, {key.lower(): 100}).config, attr) == 100
    assert getattr(load_file(tmp_path, {key: 250}, f"--{flag}", "800").config, attr) == 800
    assert getattr(load_file(tmp_path, {}, f"-{flag}=3600000").config, attr) == 3_600_000
    assert getattr(load_file(tmp_path, {key: 0}).config, attr) == default
    assert getattr(load_file(tmp_path, {key: 250}, f"--{flag}", "0").config, attr) == default
    assert getattr(load_file(tmp_path, {key: None}).config, attr) == default


@pytest.mark.parametrize("key, flag, attr, default", HTTP_TIMEOUTS)
def test_a_created_file_holds_an_http_timeout_when_it_is_not_the_default(tmp_path: Path, key: str, flag: str,
                                                                         attr: str, default: int) -> None:
    path = tmp_path / "resgate.json"
    loaded = load("-c", str(path), f"--{flag}", "1500")
    document = json.loads(path.read_text())
    assert list(document) == [*RESGATE_KEYS, key]
    assert document[key] == 1500
    assert load("-c", str(path)).config == loaded.config


@pytest.mark.parametrize("key, flag, attr, default", HTTP_TIMEOUTS)
@pytest.mark.parametrize(
    "value, reason",
    [
        (-1, "must not be negative"),
        ("30s", "must be an integer"),
        (0.5, "must be an integer"),
        (True, "must be an integer"),
        ([1000], "must be an integer"),
        (99, "must be from 100 to 3600000 milliseconds"),
        (3_600_001, "must be from 100 to 3600000 milliseconds"),
        (2**63, "must be at most"),
    ],
)
def test_invalid_http_timeout_in_the_file_and_from_the_flag(tmp_path: Path, key: str, flag: str, attr: str,
                                                            default: int, value: Any, reason: str) -> None:
    shown = json.dumps(value)
    assert f"invalid {key} {shown} in {tmp_path / 'resgate.json'}: {reason}" in config_error(tmp_path, {key: value})
    if type(value) is int and value >= 0:
        with pytest.raises(ConfigError, match=re.escape(f"invalid {key} {value} from --{flag}: {reason}")):
            load(f"--{flag}", str(value))


def test_http_timeouts_are_checked_on_direct_creation() -> None:
    with pytest.raises(ConfigError, match="invalid bodyTimeout 0: must be from 100"):
        Config(body_timeout=0)


# refuseNullOrigin (ours): "Origin: null" refused as a disallowed origin


@pytest.mark.parametrize(
    "file, argv, expected",
    [
        ({}, [], False),
        ({"refuseNullOrigin": True}, [], True),
        ({"refusenullorigin": True}, [], True),
        ({}, ["--refusenullorigin"], True),
        ({"refuseNullOrigin": True}, ["-refusenullorigin=false"], False),
        ({"refuseNullOrigin": None}, [], False),
    ],
)
def test_refuse_null_origin_from_the_file_and_the_flag(tmp_path: Path, file: dict[str, Any], argv: list[str],
                                                       expected: bool) -> None:
    assert load_file(tmp_path, file, *argv).config.refuse_null_origin is expected


def test_a_created_file_holds_refuse_null_origin_only_when_set(tmp_path: Path) -> None:
    path = tmp_path / "resgate.json"
    load("-c", str(path))
    assert "refuseNullOrigin" not in json.loads(path.read_text())
    other = tmp_path / "other.json"
    load("-c", str(other), "--refusenullorigin")
    assert json.loads(other.read_text())["refuseNullOrigin"] is True


@pytest.mark.parametrize("value", ["yes", 1, "true", [True]])
def test_refuse_null_origin_must_be_a_boolean(tmp_path: Path, value: Any) -> None:
    assert f"invalid refuseNullOrigin {json.dumps(value)}" in config_error(tmp_path, {"refuseNullOrigin": value})


# maxConns, maxConnsPerAddr, maxResources: the capacity caps (ours)


def test_caps_default_to_the_file_limit_no_address_cap_and_20000_resources(tmp_path: Path) -> None:
    path = tmp_path / "resgate.json"
    config = load("-c", str(path)).config
    assert (config.max_conns, config.max_conns_per_addr, config.max_resources) == (0, 0, 20_000)
    assert not {"maxConns", "maxConnsPerAddr", "maxResources"} & set(json.loads(path.read_text()))


@pytest.mark.parametrize(
    "file, argv, expected",
    [
        ({"maxConns": 100, "maxConnsPerAddr": 10, "maxResources": 50}, [], (100, 10, 50)),
        ({"maxconns": 100, "MAXCONNSPERADDR": 10, "maxresources": 50}, [], (100, 10, 50)),
        ({"maxConns": 100}, ["--maxconns", "200", "-maxconnsperaddr=3", "--maxresources", "7"], (200, 3, 7)),
        ({"maxConns": 100, "maxConnsPerAddr": 10, "maxResources": 50},
         ["--maxconns", "0", "--maxconnsperaddr", "0", "--maxresources", "0"], (0, 0, 20_000)),
        ({"maxConns": 1048576, "maxConnsPerAddr": 1048576, "maxResources": 10_000_000}, [],
         (1048576, 1048576, 10_000_000)),
        ({"maxConns": None, "maxConnsPerAddr": None, "maxResources": None}, [], (0, 0, 20_000)),
    ],
)
def test_caps_from_the_file_and_the_flags(
    tmp_path: Path, file: dict[str, Any], argv: list[str], expected: tuple[int, int, int]
) -> None:
    config = load_file(tmp_path, file, *argv).config
    assert (config.max_conns, config.max_conns_per_addr, config.max_resources) == expected


def test_a_created_file_holds_the_caps_that_are_not_the_default(tmp_path: Path) -> None:
    path = tmp_path / "resgate.json"
    loaded = load("-c", str(path), "--maxconns", "500", "--maxresources", "100")
    document = json.loads(path.read_text())
    assert list(document) == [*RESGATE_KEYS, "maxConns", "maxResources"]
    assert load("-c", str(path)).config == loaded.config


@pytest.mark.parametrize(
    "file, expected",
    [
        ({"maxConns": -1}, "invalid maxConns -1 in {file}: must not be negative"),
        ({"maxConns": "10k"}, 'invalid maxConns "10k" in {file}: must be an integer'),
        ({"maxConns": 1e4}, "invalid maxConns 10000.0 in {file}: must be an integer"),
        ({"maxConns": True}, "invalid maxConns true in {file}: must be an integer"),
        ({"maxConns": 1048577}, "invalid maxConns 1048577 in {file}: must be from 0 to 1048576 connections"),
        ({"maxConns": 2**63}, f"invalid maxConns {2**63} in {{file}}: must be at most"),
        ({"maxConnsPerAddr": -5}, "invalid maxConnsPerAddr -5 in {file}: must not be negative"),
        ({"maxConnsPerAddr": [2]}, "invalid maxConnsPerAddr [2] in {file}: must be an integer"),
        ({"maxConnsPerAddr": 2**40}, f"invalid maxConnsPerAddr {2**40} in {{file}}: must be from 0 to 1048576"),
        ({"maxResources": -1}, "invalid maxResources -1 in {file}: must not be negative"),
        ({"maxResources": {"n": 1}}, 'invalid maxResources {{"n": 1}} in {file}: must be an integer'),
        ({"maxResources": 10_000_001}, "invalid maxResources 10000001 in {file}: must be from 1 to 10000000"),
    ],
)
def test_invalid_caps_in_the_file(tmp_path: Path, file: dict[str, Any], expected: str) -> None:
    assert expected.format(file=tmp_path / "resgate.json") in config_error(tmp_path, file)


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--maxconns", "-1"], "invalid maxConns -1 from --maxconns: must not be negative"),
        (["--maxconns", str(10**30)], f"invalid maxConns {10**30} from --maxconns: must be at most"),
        (["--maxconnsperaddr", "2000000"], "invalid maxConnsPerAddr 2000000 from --maxconnsperaddr: must be from 0"),
        (["--maxresources", "99999999999"], "invalid maxResources 99999999999 from --maxresources: must be from 1"),
    ],
)
def test_invalid_caps_from_the_flags(argv: list[str], expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        load(*argv)
    assert expected in str(error.value)


@pytest.mark.parametrize("flag", ["--maxconns", "--maxconnsperaddr", "--maxresources"])
@pytest.mark.parametrize("value", ["ten", "1.5", "0x10", ""])
def test_caps_flags_take_only_integers(flag: str, value: str) -> None:
    with pytest.raises(usage.UsageError, match=f'invalid value "{value}" for {flag}: must be an integer'):
        load(flag, value)


def test_max_resources_is_checked_on_direct_creation() -> None:
    with pytest.raises(ConfigError, match="invalid maxResources 0: must be from 1"):
        Config(max_resources=0)
