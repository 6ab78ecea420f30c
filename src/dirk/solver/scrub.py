"""Replacing secret values with `***` in a step's output, also across write boundaries.

A command's output arrives in chunks cut anywhere, so a value may be split between two writes.
`StreamScrubber` keeps back the bytes that could still be the start of a value (never more than
the longest value) until the next chunk or the end decides; the result is the same
for every way of cutting the stream. A multi-line value is scrubbed line by line (a program
that prints a key file line by line must not leak it), so each non-blank line is a pattern.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: What a secret value reads as in scrubbed output (Dagger's spelling).
MASK = b"***"
#: Up to this length of the longest value, a stream lets out every byte that cannot start one.
_SEARCH_LIMIT = 256


def secret_patterns(values: Iterable[bytes]) -> tuple[bytes, ...]:
    """The byte strings to hide for `values`: each line of each value that is not blank
    (without its line break), longest first so the longest match wins at a position."""
    patterns: set[bytes] = set()
    for value in values:
        for line in value.splitlines():
            if line.strip():
                patterns.add(line)
    return tuple(sorted(patterns, key=lambda p: (-len(p), p)))


class Scrubber:
    """Scrubs whole texts; `stream()` makes a scrubber for one chunked stream."""

    def __init__(self, values: Iterable[bytes]) -> None:
        self.values = tuple(values)
        patterns = secret_patterns(self.values)
        self._patterns = patterns
        self._regex = re.compile(b"|".join(re.escape(p) for p in patterns)) if patterns else None
        self._longest = len(patterns[0]) if patterns else 0

    @property
    def active(self) -> bool:
        """Whether there is anything to hide."""
        return self._regex is not None

    def scrub(self, data: bytes) -> bytes:
        if self._regex is None:
            return data
        return self._regex.sub(MASK, data)

    def scrub_text(self, text: str) -> str:
        if self._regex is None:
            return text
        return self.scrub(text.encode("utf-8", errors="surrogateescape")).decode(
            "utf-8", errors="replace"
        )

    def stream(self) -> StreamScrubber:
        return StreamScrubber(self)


class StreamScrubber:
    """One output stream: `feed` each chunk, then `finish`; the concatenated results equal
    `Scrubber.scrub` of the whole stream."""

    def __init__(self, scrubber: Scrubber) -> None:
        self._regex = scrubber._regex
        self._patterns = scrubber._patterns
        self._longest = scrubber._longest
        self._keep = max(0, scrubber._longest - 1)
        self._carry = b""

    def feed(self, chunk: bytes) -> bytes:
        if self._regex is None:
            return chunk
        data = self._carry + chunk
        # A match starting before `decided` has all the bytes its longest pattern needs, so
        # the choice made there is final; later positions wait for more data.
        decided = len(data) - self._keep
        out: list[bytes] = []
        done = 0
        for match in self._regex.finditer(data):
            if match.start() >= decided:
                break
            out.append(data[done : match.start()])
            out.append(MASK)
            done = match.end()
        cut = self._undecided(data, max(done, decided, 0))
        out.append(data[done:cut])
        self._carry = data[cut:]
        return b"".join(out)

    def _undecided(self, data: bytes, start: int) -> int:
        """The first position from `start` on where a value may begin (a whole value that a
        longer one could extend, or the start of one cut off by the chunk's end): what comes
        before it can be let out now. With long values the search would cost more than it
        saves: then the last bytes that could hold a value's start wait, whatever they are."""
        if self._longest > _SEARCH_LIMIT:
            return start
        for position in range(start, len(data)):
            tail = data[position : position + self._longest]
            if any(p.startswith(tail) or tail.startswith(p) for p in self._patterns):
                return position
        return len(data)

    def finish(self) -> bytes:
        """The held-back tail, scrubbed: call once the stream has ended."""
        rest, self._carry = self._carry, b""
        if self._regex is None:
            return rest
        return self._regex.sub(MASK, rest)
