"""Validation by shape: a document validated once is not validated again for new strings.

SDKs write argument values into the query text, so a pipeline run again with one changed
string (a commit hash, a salt, a file's contents) sends a new text: the document cache misses,
and graphql-core's validation (about 1.6 ms for a five-field chain, ten times its parse) ran
again although nothing it checks had changed.

What validation decides does not depend on what a string literal holds, only on where it
stands: a string where a String, an ID or one of dirk's custom scalars goes is valid whatever
its characters, and a string anywhere else is invalid whatever its characters. That holds
because every custom scalar of dirk's schema takes any string literal (`SCALARS_TAKING_ANY_STRING`
and the pass-through ID scalars; `tests/unit/test_wire_shapes.py` fails when a scalar is added
that this module does not know). So a document's *shape* is its token stream with each string's
contents left out, and a shape that once validated without errors validates so again. Shapes
that failed are not kept: their errors name values.
"""

from __future__ import annotations

from collections import OrderedDict

from graphql import DocumentNode, Token, TokenKind

#: Custom scalars of dirk's schema whose literal parsing accepts any string (graphql-core's
#: default for a scalar without `parse_literal`). The ID scalars pass strings through too.
SCALARS_TAKING_ANY_STRING = frozenset({"Platform", "JSON", "Void"})

_STRINGS = (TokenKind.STRING, TokenKind.BLOCK_STRING)


def shape_of(document: DocumentNode) -> str | None:
    """The document's tokens with string contents blanked, as one string; None when the
    document was parsed without locations (no tokens to walk)."""
    loc = document.loc
    if loc is None:
        return None
    parts: list[str] = []
    token: Token | None = loc.start_token
    while token is not None:
        kind = token.kind
        if kind in _STRINGS:
            parts.append('""')
        elif token.value is not None:
            parts.append(token.value)
        else:
            parts.append(kind.value)
        token = token.next
    return " ".join(parts)


class ValidShapes:
    """Shapes of documents that validated without errors, least recently used dropped first
    once their text passes `max_chars` in all; one longer than `max_entry_chars` is not kept.
    Thread-safe as the document cache is: each change is one dict operation."""

    def __init__(self, max_chars: int, max_entry_chars: int) -> None:
        self.max_chars = max_chars
        self.max_entry_chars = max_entry_chars
        self._shapes: OrderedDict[str, None] = OrderedDict()
        self._chars = 0

    def __contains__(self, shape: str) -> bool:
        if shape in self._shapes:
            self._shapes.move_to_end(shape)
            return True
        return False

    def add(self, shape: str) -> None:
        if shape in self._shapes or len(shape) > self.max_entry_chars:
            return
        self._shapes[shape] = None
        self._chars += len(shape)
        while self._chars > self.max_chars and self._shapes:
            dropped, _ = self._shapes.popitem(last=False)
            self._chars -= len(dropped)
