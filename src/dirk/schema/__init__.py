"""The GraphQL schema (SDL) shared by the engine's resolvers and the generated SDK."""

from __future__ import annotations

from pathlib import Path

#: The SDL file: a subset of Dagger's core API with Dagger's names, types and defaults.
SCHEMA_PATH = Path(__file__).with_name("dirk.graphql")


def load_sdl() -> str:
    """The schema's SDL text."""
    return SCHEMA_PATH.read_text(encoding="utf-8")
