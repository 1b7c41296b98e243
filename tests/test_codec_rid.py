"""Resource ID and RID-part validation, by Resgate's codec rules."""

import pytest

from resgate.codec import is_valid_rid, is_valid_rid_part

VALID_EITHER_WAY = [
    "a",
    "library",
    "library.book",
    "library.book.42",
    "library.book._draft_",
    "library.<b",
    "library.!#$%&'()+,-/:;<=@[\\]^`{|}~",
]

VALID_ONLY_WITH_QUERY = [
    "library.books?",
    "library.books?from=10&limit=5",
    "library.books?author=j.r.r.tolkien",
    # After the mark anything goes: wildcards, dots, spaces, a second mark.
    "library.books?q=*&x=>.. ?",
    "library.books?title=bl\u00e5b\u00e6r",
    "library.books?a\nb",
]

INVALID_EITHER_WAY = [
    "",
    ".",
    "?",
    "?q=1",
    ".library",
    "library.",
    "library..book",
    ".library.book?q=1",
    "library..book?q=1",
    "library.?q=1",
    "library.*",
    "library.*.book",
    "library.>",
    "library.>.book?q=1",
    "library book",
    "library\tbook",
    "library\nbook",
    "library\rbook",
    "library\x00book",
    "library\x7fbook",
    "biblioth\u00e8que.book",
    "library\ufffdbook",
    "library.book\u2028",
]


@pytest.mark.parametrize("rid", VALID_EITHER_WAY)
def test_valid_rids_pass_with_and_without_query_allowed(rid: str) -> None:
    assert is_valid_rid(rid, True)
    assert is_valid_rid(rid, False)


@pytest.mark.parametrize("rid", VALID_ONLY_WITH_QUERY)
def test_a_query_is_accepted_only_when_allowed(rid: str) -> None:
    assert is_valid_rid(rid, True)
    assert not is_valid_rid(rid, False)


@pytest.mark.parametrize("rid", INVALID_EITHER_WAY)
def test_invalid_rids_fail_whether_or_not_a_query_is_allowed(rid: str) -> None:
    assert not is_valid_rid(rid, True)
    assert not is_valid_rid(rid, False)


@pytest.mark.parametrize("part", ["set", "login", "_x_", "42", "a-b", "<x", "!~"])
def test_valid_rid_parts(part: str) -> None:
    assert is_valid_rid_part(part)


@pytest.mark.parametrize(
    "part", ["", "a.b", ".", "*", "a*", ">", "a>", "?", "a?b", "a b", "a\tb", "\u00e9", "\x7f"]
)
def test_invalid_rid_parts(part: str) -> None:
    assert not is_valid_rid_part(part)


def test_every_printable_ascii_character_but_the_reserved_ones_makes_a_part() -> None:
    reserved = set(".*>?")
    for code in range(0, 128):
        char = chr(code)
        expected = 33 <= code <= 126 and char not in reserved
        assert is_valid_rid_part(char) is expected, repr(char)
