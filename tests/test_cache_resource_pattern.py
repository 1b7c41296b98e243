"""Resource name patterns of system.reset events (Resgate's 61rescache_resourcepattern scenarios).

Unit tests of ``resgate.cache.pattern.ResourcePattern``, as upstream tests its
rescache ResourcePattern: ``*`` matches one part, a final ``>`` one or
more parts; anything not a valid pattern (``ResourcePattern.parse`` gives
None) matches nothing.

| upstream test function | pytest test(s) here |
| --- | --- |
| TestParseResourcePattern_WithValidPatterns_IsValidReturnsTrue | test_valid_pattern_parses (table: 16 patterns) |
| TestParseResourcePattern_WithInvalidPatterns_IsValidReturnsFalse | test_invalid_pattern_does_not_parse (table: 21 patterns) |
| TestResourcePatternMatche_MatchingPattern_ReturnsTrue | test_pattern_matches_resource_name (table: 16 pairs) |
| TestResourcePatternMatche_NonMatchingPattern_ReturnsFalse | test_pattern_does_not_match_resource_name (table: 22 pairs) |

All ported.
"""

import pytest

from resgate.cache.pattern import ResourcePattern

VALID = [
    "test", "test.model", "test.model.foo", "test$.model", "$test.model",
    ">", "test.>", "test.model.>",
    "*", "test.*", "*.model", "test.*.foo", "test.model.*", "*.model.foo", "test.*.*",
    "test.*.>",
]

INVALID = [
    "", ".", ".test", "test.", "test..foo",
    "*test", "test*", "test.*foo", "test.foo*", "test.**.foo",
    ">test", "test>", "test.>foo", "test.foo>", "test.>.foo",
    "test.$foo>", "test.$foo*",
    "test.foo?", "test. .foo", "test.\x127.foo", "test.räv",
]

MATCHING = [
    ("test", "test"), ("test.model", "test.model"), ("test.model.foo", "test.model.foo"),
    ("test$.model", "test$.model"), ("$foo.model", "$foo.model"),
    (">", "test.model.foo"), ("test.>", "test.model.foo"), ("test.model.>", "test.model.foo"),
    ("*", "test"), ("test.*", "test.model"), ("*.model", "test.model"), ("test.*.foo", "test.model.foo"),
    ("test.model.*", "test.model.foo"), ("*.model.foo", "test.model.foo"), ("test.*.*", "test.model.foo"),
    ("test.*.>", "test.model.foo"),
]

NOT_MATCHING = [
    ("", ""), ("", "test"), ("test", "test.model"), ("test.model", "test.mode"),
    ("test.model.foo", "test.model"), ("test.model.foo", "test.mode.foo"), ("test", "testing"),
    ("testing", "test"), ("foo", "bar"),
    (">", ""), ("test.>", "test"), ("test.model.>", "test.model"),
    ("*", "test.model"), ("test.*", "test.model.foo"), ("*.model", "test"), ("test.*.foo", "test.model"),
    ("test.model.*", "test.model"), ("*.model.foo", "test.model"), ("test.*.*", "test.model"),
    ("foo.*", "bar.model"), ("*.bar", "foo.baz"),
    ("test.*.>", "test.model"),
]


def matches(pattern: str, name: str) -> bool:
    """Whether a system.reset pattern covers resource ``name`` (invalid patterns cover nothing)."""
    parsed = ResourcePattern.parse(pattern)
    return parsed is not None and parsed.match(name)


@pytest.mark.parametrize("pattern", VALID)
def test_valid_pattern_parses(pattern):
    assert ResourcePattern.parse(pattern) is not None


@pytest.mark.parametrize("pattern", INVALID, ids=[repr(p) for p in INVALID])
def test_invalid_pattern_does_not_parse(pattern):
    assert ResourcePattern.parse(pattern) is None


@pytest.mark.parametrize("pattern, name", MATCHING)
def test_pattern_matches_resource_name(pattern, name):
    assert matches(pattern, name)


@pytest.mark.parametrize("pattern, name", NOT_MATCHING)
def test_pattern_does_not_match_resource_name(pattern, name):
    assert not matches(pattern, name)
