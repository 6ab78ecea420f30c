"""The GraphQL schema (SDL) shared by the engine's resolvers and the generated SDK."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from graphql import GraphQLSchema

#: The SDL file: a subset of Dagger's core API with Dagger's names, types and defaults.
SCHEMA_PATH = Path(__file__).with_name("dirk.graphql")


def load_sdl() -> str:
    """The schema's SDL text."""
    return SCHEMA_PATH.read_text(encoding="utf-8")


def load_schema() -> GraphQLSchema:
    """The SDL's schema, without resolvers; parsed and validated once per SDL text (see
    `dirk.schema.cache`): the engine's start no longer pays for it."""
    from dirk.schema.cache import build_cached

    return build_cached(SCHEMA_PATH)
