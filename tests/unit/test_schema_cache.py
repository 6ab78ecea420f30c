"""The parsed SDL kept beside the schema file: a build from it is the same schema as a full
build, and nothing but a valid schema's document, under its own digest, is ever used."""

from __future__ import annotations

import shutil
from pathlib import Path

import graphql
import pytest

from dirk.schema import SCHEMA_PATH, load_sdl
from dirk.schema.cache import build_cached, cache_path


@pytest.fixture
def sdl_file(tmp_path: Path) -> Path:
    path = tmp_path / "dirk.graphql"
    shutil.copyfile(SCHEMA_PATH, path)
    return path


def _introspection(schema: graphql.GraphQLSchema) -> object:
    result = graphql.graphql_sync(schema, graphql.get_introspection_query(descriptions=True))
    assert result.errors is None
    return result.data


def test_a_build_from_the_stored_document_is_the_full_build(sdl_file: Path) -> None:
    full = graphql.build_schema(load_sdl())
    first = build_cached(sdl_file)  # parses, validates, stores
    stored = cache_path(sdl_file, sdl_file.read_bytes())
    assert stored.is_file()
    again = build_cached(sdl_file)  # from the stored document
    assert graphql.print_schema(again) == graphql.print_schema(full)
    assert _introspection(again) == _introspection(full) == _introspection(first)
    assert graphql.validate_schema(again) == []


def test_another_sdl_text_has_its_own_file_and_replaces_the_old_one(sdl_file: Path) -> None:
    build_cached(sdl_file)
    old = cache_path(sdl_file, sdl_file.read_bytes())
    sdl_file.write_text(load_sdl() + "\ntype Extra { name: String! }\n")
    schema = build_cached(sdl_file)
    new = cache_path(sdl_file, sdl_file.read_bytes())
    assert new != old and new.is_file() and not old.exists()
    assert "Extra" in schema.type_map
    assert "Extra" in build_cached(sdl_file).type_map


def test_a_broken_stored_file_is_ignored_and_replaced(sdl_file: Path) -> None:
    stored = cache_path(sdl_file, sdl_file.read_bytes())
    stored.parent.mkdir()
    stored.write_bytes(b"not a pickle")
    schema = build_cached(sdl_file)
    assert "Container" in schema.type_map
    assert stored.read_bytes() != b"not a pickle"
    assert "Container" in build_cached(sdl_file).type_map


def test_an_invalid_schema_is_not_stored_and_fails_where_it_did(sdl_file: Path) -> None:
    # Valid SDL, invalid schema: an interface no type implements is fine, an object type
    # without fields is not.
    sdl_file.write_text("type Query { a: Empty }\ntype Empty\n")
    schema = build_cached(sdl_file)
    assert not cache_path(sdl_file, sdl_file.read_bytes()).exists()
    result = graphql.graphql_sync(schema, "{ __typename }")
    assert result.errors and "Empty must define one or more fields" in str(result.errors)


def test_invalid_sdl_fails_with_its_location(sdl_file: Path) -> None:
    sdl_file.write_text("type Query { a: Missing }\n")
    with pytest.raises(TypeError, match="Missing"):
        build_cached(sdl_file)
    assert not cache_path(sdl_file, sdl_file.read_bytes()).exists()


def test_an_unwritable_directory_still_builds(
    sdl_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: Path, data: bytes) -> int:
        raise PermissionError("read-only")

    monkeypatch.setattr(Path, "write_bytes", refuse)
    schema = build_cached(sdl_file)
    assert "Container" in schema.type_map
    assert not cache_path(sdl_file, sdl_file.read_bytes()).exists()
