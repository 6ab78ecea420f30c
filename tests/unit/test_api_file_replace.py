"""`File.withReplaced`'s rules on bytes: one match, all matches, the first from a line."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dirk.api.file import replaced
from dirk.errors import InvalidArgumentError

TEXT = b"a = 1\nb = 1\nc = 1\n"


def test_one_match_is_replaced() -> None:
    assert replaced(TEXT, b"b = 1", b"b = 2", False, None) == b"a = 1\nb = 2\nc = 1\n"


def test_several_matches_need_all_or_first_from() -> None:
    with pytest.raises(InvalidArgumentError, match="more than once"):
        replaced(TEXT, b"= 1", b"= 2", False, None)
    assert replaced(TEXT, b"= 1", b"= 2", True, None) == b"a = 2\nb = 2\nc = 2\n"
    assert replaced(TEXT, b"= 1", b"= 2", False, 2) == b"a = 1\nb = 2\nc = 1\n"
    assert replaced(TEXT, b"= 1", b"= 2", False, 1) == b"a = 2\nb = 1\nc = 1\n"


def test_no_match_is_an_error() -> None:
    with pytest.raises(InvalidArgumentError, match="not found"):
        replaced(TEXT, b"zzz", b"", False, None)
    with pytest.raises(InvalidArgumentError, match="line 9 or after"):
        replaced(TEXT, b"a = 1", b"", False, 9)
    with pytest.raises(InvalidArgumentError, match="from 1"):
        replaced(TEXT, b"a", b"", False, 0)


@given(st.binary(max_size=40), st.binary(min_size=1, max_size=3), st.binary(max_size=3))
def test_all_is_bytes_replace(data: bytes, search: bytes, replacement: bytes) -> None:
    if search in data:
        assert replaced(data, search, replacement, True, None) == data.replace(search, replacement)
    else:
        with pytest.raises(InvalidArgumentError):
            replaced(data, search, replacement, True, None)
