"""Bounds on what one GraphQL request may cost the engine before any resolver runs.

Parsing and validating a document costs CPU in proportion to its tokens and fields; a hostile
or broken client could otherwise stall the engine with one request. Each bound is far above
what a real pipeline sends (a 1,000-step chain is about 15,000 tokens), is refused with an
error that names the bound and how to raise it, and is set by an environment variable of the
engine process.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import attrs
from graphql import DocumentNode, GraphQLError, parse
from graphql.language import FieldNode, Visitor, visit

from dirk.errors import QueryLimitError


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise QueryLimitError(f"{name}={raw!r} is not a whole number") from None
    if value <= 0:
        raise QueryLimitError(f"{name}={raw!r} must be positive")
    return value


#: How graphql-core's parser says it stopped at `max_lexical_tokens`.
_TOO_MANY_TOKENS = "Syntax Error: Document contains more than"


@attrs.frozen
class QueryLimits:
    """What one request may hold. Raise any of them with its environment variable when the
    engine starts (e.g. `DIRK_MAX_QUERY_FIELDS=100000 dirk engine`)."""

    #: Characters of query text (file contents given inline count too).
    max_chars: int = 32 * 1024 * 1024
    #: Lexical tokens: names, punctuation, values. Bounds the parser's work.
    max_tokens: int = 100_000
    #: Field selections, aliases included. Bounds validation and execution.
    max_fields: int = 20_000

    ENV = {
        "max_chars": "DIRK_MAX_QUERY_CHARS",
        "max_tokens": "DIRK_MAX_QUERY_TOKENS",
        "max_fields": "DIRK_MAX_QUERY_FIELDS",
    }

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> QueryLimits:
        defaults = cls()
        return cls(
            **{
                field: _env_int(env, variable, getattr(defaults, field))
                for field, variable in cls.ENV.items()
            }
        )

    def parse(self, query: str) -> DocumentNode:
        """The parsed document, or a `GraphQLError` (syntax) / `QueryLimitError` (too big)."""
        if len(query) > self.max_chars:
            raise self._refusal("max_chars", f"{len(query)} characters")
        try:
            document = parse(query, max_lexical_tokens=self.max_tokens, no_location=False)
        except GraphQLError as error:
            if error.message.startswith(_TOO_MANY_TOKENS):
                raise self._refusal("max_tokens", "more tokens") from None
            raise
        fields = count_fields(document, self.max_fields)
        if fields > self.max_fields:
            raise self._refusal("max_fields", "more fields (aliases included)")
        return document

    def _refusal(self, field: str, found: str) -> QueryLimitError:
        limit = getattr(self, field)
        variable = self.ENV[field]
        what = field.removeprefix("max_")
        return QueryLimitError(
            f"the query is too large: it has {found} than the engine's limit of {limit} "
            f"{what} ({variable}). Split the pipeline into several queries (sync an object, "
            f"then go on from it), or start the engine with a larger {variable}"
        )


class _FieldCounter(Visitor):
    def __init__(self, stop_after: int) -> None:
        super().__init__()
        self.count = 0
        self.stop_after = stop_after

    def enter_field(self, node: FieldNode, *_: object) -> object:
        self.count += 1
        return Visitor.BREAK if self.count > self.stop_after else None


def count_fields(document: DocumentNode, stop_after: int) -> int:
    """Field selections in `document`; counting stops once past `stop_after`."""
    counter = _FieldCounter(stop_after)
    visit(document, counter)
    return counter.count
