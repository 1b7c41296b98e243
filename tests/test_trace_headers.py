"""The W3C trace context a client sends, as the gateway checks it (resgate/tracecontext.py).

A malformed ``traceparent`` is dropped, never forwarded; ``tracestate``
goes only with a valid one and within the W3C bounds (32 members, 512
characters). The integration tests (test_tracing.py) send these over HTTP
and WebSocket to a service.
"""

from __future__ import annotations

import pytest

from resgate.tracecontext import (
    MAX_TRACEPARENT_LENGTH, MAX_TRACESTATE_LENGTH, MAX_TRACESTATE_MEMBERS, trace_headers, valid_traceparent,
    valid_tracestate,
)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
VALID = f"00-{TRACE_ID}-{SPAN_ID}-01"

MALFORMED_TRACEPARENTS = [
    ("empty", ""),
    ("too short", VALID[:-1]),
    ("too long for version 00", VALID + "0"),
    ("version 00 with more fields", VALID + "-00"),
    ("upper-case hex", VALID.upper()),
    ("bad hex in the trace id", f"00-{TRACE_ID[:-1]}g-{SPAN_ID}-01"),
    ("bad hex in the span id", f"00-{TRACE_ID}-{SPAN_ID[:-1]}x-01"),
    ("bad hex in the flags", f"00-{TRACE_ID}-{SPAN_ID}-0z"),
    ("bad hex in the version", f"0g-{TRACE_ID}-{SPAN_ID}-01"),
    ("version ff", f"ff-{TRACE_ID}-{SPAN_ID}-01"),
    ("all-zero trace id", f"00-{'0' * 32}-{SPAN_ID}-01"),
    ("all-zero span id", f"00-{TRACE_ID}-{'0' * 16}-01"),
    ("wrong separators", f"00_{TRACE_ID}_{SPAN_ID}_01"),
    ("spaces around", f" {VALID} "),
    ("a line break inside", VALID[:20] + "\r\n" + VALID[20:]),
    ("non-ASCII", VALID[:-1] + "\u00e9"),
    ("a later version without a dash after the fields", f"01-{TRACE_ID}-{SPAN_ID}-01x"),
    ("a later version, oversized", f"01-{TRACE_ID}-{SPAN_ID}-01-" + "a" * MAX_TRACEPARENT_LENGTH),
    ("two values in one line", f"{VALID}, {VALID}"),
]


def test_a_valid_traceparent_is_forwarded_unchanged():
    assert valid_traceparent([VALID]) == VALID
    assert valid_traceparent([f"00-{TRACE_ID}-{SPAN_ID}-00"]) == f"00-{TRACE_ID}-{SPAN_ID}-00"


@pytest.mark.parametrize("name, value", MALFORMED_TRACEPARENTS, ids=[row[0] for row in MALFORMED_TRACEPARENTS])
def test_a_malformed_traceparent_is_dropped(name, value):
    assert valid_traceparent([value]) is None
    assert trace_headers([value], ["vendor=value"]) is None


def test_several_traceparent_headers_are_dropped():
    assert valid_traceparent([VALID, VALID]) is None
    assert valid_traceparent([]) is None
    assert valid_traceparent(None) is None


def test_a_later_version_is_read_by_its_version_00_fields():
    assert valid_traceparent([f"cc-{TRACE_ID}-{SPAN_ID}-01"]) == VALID
    assert valid_traceparent([f"cc-{TRACE_ID}-{SPAN_ID}-01-what-comes-later"]) == VALID


def test_tracestate_goes_with_a_valid_traceparent_only():
    assert trace_headers([VALID], ["congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"]) == {
        "traceparent": VALID, "tracestate": "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"}
    assert trace_headers([VALID], None) == {"traceparent": VALID}
    assert trace_headers(None, ["congo=t61rcWkgMzE"]) is None


def test_tracestate_lines_make_one_list_without_empty_members_or_spaces():
    assert valid_tracestate(["a=1 , ,b=2", "tenant@system=x y"]) == "a=1,b=2,tenant@system=x y"


def test_tracestate_at_its_bounds_is_forwarded_and_past_them_dropped():
    members = [f"k{i}=v" for i in range(MAX_TRACESTATE_MEMBERS)]
    assert valid_tracestate([",".join(members)]) == ",".join(members)
    assert valid_tracestate([",".join(members + ["one=more"])]) is None
    # Four members of 128 characters make the 512 characters exactly (with their three commas).
    long_members = [f"k{i}=" + "v" * (128 - 3 - (1 if i < 3 else 0)) for i in range(4)]
    at_bound = ",".join(long_members)
    assert len(at_bound) == MAX_TRACESTATE_LENGTH
    assert valid_tracestate([at_bound]) == at_bound
    assert valid_tracestate([at_bound + "v"]) is None


MALFORMED_TRACESTATES = [
    ("no equals sign", "congo"),
    ("empty value", "congo="),
    ("upper-case key", "Congo=1"),
    ("key starting with a digit", "1congo=1"),
    ("comma in value", "a=1,b"),
    ("equals sign in value", "a=b=c"),
    ("space inside the key", "a b=1"),
    ("control character", "a=b\x01"),
    ("non-ASCII", "a=\u00e9"),
    ("a key twice", "a=1,a=2"),
    ("key too long", "a" * 257 + "=1"),
    ("value too long", "a=" + "v" * 257),
    ("system id too long", "t@" + "s" * 15 + "=1"),
]


@pytest.mark.parametrize("name, value", MALFORMED_TRACESTATES, ids=[row[0] for row in MALFORMED_TRACESTATES])
def test_a_malformed_tracestate_is_dropped_whole(name, value):
    assert valid_tracestate([value]) is None
    assert trace_headers([VALID], [value]) == {"traceparent": VALID}


def test_an_oversized_tracestate_is_dropped():
    assert valid_tracestate(["a=" + "v" * 250 + "," + "b=" + "v" * 250 + "," + "c=" + "v" * 20]) is None
    assert valid_tracestate(["a=1," * 10000]) is None
