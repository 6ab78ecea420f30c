"""The scrubber: every occurrence of a secret reads `***`, whatever the chunking of a stream."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dirk.solver import scrub
from dirk.solver.scrub import MASK, Scrubber, secret_patterns


def chunked(scrubber: Scrubber, data: bytes, cuts: list[int]) -> bytes:
    stream = scrubber.stream()
    out, start = [], 0
    for cut in sorted(set(c % (len(data) + 1) for c in cuts)):
        out.append(stream.feed(data[start:cut]))
        start = cut
    out.append(stream.feed(data[start:]))
    out.append(stream.finish())
    return b"".join(out)


def test_every_occurrence_is_masked() -> None:
    scrubber = Scrubber([b"hunter2"])
    assert scrubber.scrub(b"pw=hunter2 again hunter2\n") == b"pw=*** again ***\n"


def test_multi_line_values_are_masked_line_by_line() -> None:
    key = b"-----BEGIN KEY-----\nabc123\n-----END KEY-----\n"
    scrubber = Scrubber([key])
    assert secret_patterns([key]) == (b"-----BEGIN KEY-----", b"-----END KEY-----", b"abc123")
    # printed as is, and one line printed alone
    assert scrubber.scrub(key) == b"***\n***\n***\n"
    assert scrubber.scrub(b"line: abc123.") == b"line: ***."


def test_longest_value_wins_and_blank_lines_are_ignored() -> None:
    scrubber = Scrubber([b"abc", b"abcdef", b"\n  \n"])
    assert scrubber.scrub(b"abcdef abc ab") == b"*** *** ab"
    assert not Scrubber([b"", b"\n"]).active


def test_a_value_split_between_writes_is_masked() -> None:
    scrubber = Scrubber([b"s3cr3t-value"])
    stream = scrubber.stream()
    first = stream.feed(b"token: s3cr3")
    assert b"s3cr3" not in first  # held back: it may be the start of the value
    rest = stream.feed(b"t-value done\n") + stream.finish()
    assert first + rest == b"token: *** done\n"


def test_held_back_bytes_come_out_when_the_stream_ends() -> None:
    stream = Scrubber([b"abcdef"]).stream()
    assert stream.feed(b"xyzabc") == b"xyz"
    assert stream.finish() == b"abc"


secrets = st.lists(st.binary(min_size=1, max_size=8).filter(lambda v: b"*" not in v), max_size=4)
alphabet = st.sampled_from([b"a", b"b", b"c", b"\n", b"*", b"ab", b"abc"])


@given(
    values=secrets,
    pieces=st.lists(st.one_of(alphabet, st.binary(max_size=6)), max_size=30),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=20),
)
def test_any_chunking_gives_the_scrub_of_the_whole(
    values: list[bytes], pieces: list[bytes], cuts: list[int]
) -> None:
    # values are spliced into the text often, so that matches (and overlaps) happen
    data = b"".join(
        p + (values[i % len(values)] if values and i % 3 == 0 else b"")
        for i, p in enumerate(pieces)
    )
    scrubber = Scrubber(values)
    whole = scrubber.scrub(data)
    assert chunked(scrubber, data, cuts) == whole
    # the same with the holding back used for long values
    search_limit, scrub._SEARCH_LIMIT = scrub._SEARCH_LIMIT, 0
    try:
        assert chunked(scrubber, data, cuts) == whole
    finally:
        scrub._SEARCH_LIMIT = search_limit
    # no value is left between the masks
    for pattern in secret_patterns(values):
        assert all(pattern not in part for part in whole.split(MASK))


def test_long_values_are_masked_across_writes_too() -> None:
    value = bytes(range(32, 127)) * 40  # longer than the search limit
    stream = Scrubber([value]).stream()
    text = b"<" + value + b">"
    out = b"".join(stream.feed(text[i : i + 1000]) for i in range(0, len(text), 1000))
    assert out + stream.finish() == b"<***>"
