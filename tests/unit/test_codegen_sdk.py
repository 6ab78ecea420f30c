"""The generated SDK classes are up to date with the schema and named like Dagger's SDK."""

from __future__ import annotations

import inspect

import pytest

import dirk
from dirk.codegen import GEN_DIR, render
from dirk.codegen.generator import snake


def test_committed_classes_match_the_schema() -> None:
    expected = render()
    committed = {path.name: path.read_text(encoding="utf-8") for path in GEN_DIR.glob("*.py")}
    stale = sorted(
        name
        for name in expected.keys() | committed.keys()
        if expected.get(name) != committed.get(name)
    )
    assert not stale, f"src/dirk/sdk/gen/ is out of date ({', '.join(stale)}): run make codegen"


@pytest.mark.parametrize(
    ("graphql", "python"),
    [
        ("withExec", "with_exec"),
        ("exitCode", "exit_code"),
        ("loadContainerFromID", "load_container_from_id"),
        ("from", "from_"),
        ("import", "import_"),
        ("experimentalPrivilegedNesting", "experimental_privileged_nesting"),
        ("id", "id"),
    ],
)
def test_names_follow_daggers_python_sdk(graphql: str, python: str) -> None:
    assert snake(graphql) == python


def test_required_arguments_are_positional_and_optional_ones_keyword_only() -> None:
    params = inspect.signature(dirk.Container.with_directory).parameters
    assert list(params) == [
        "self", "path", "source", "exclude", "include", "gitignore", "owner", "expand",
        "permissions",
    ]  # fmt: skip
    assert params["path"].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert params["exclude"].kind is inspect.Parameter.KEYWORD_ONLY
    assert params["exclude"].default is None  # no mutable default for `[]`
    assert params["gitignore"].default is False
    assert params["source"].annotation == "Directory[M]"  # object arguments take objects
    expect = inspect.signature(dirk.Container.with_exec).parameters["expect"]
    assert expect.default is dirk.ReturnType.SUCCESS


def test_enums_are_python_enums_with_daggers_values() -> None:
    assert [m.value for m in dirk.CacheSharingMode] == ["SHARED", "PRIVATE", "LOCKED"]
    assert [m.value for m in dirk.ReturnType] == ["SUCCESS", "FAILURE", "ANY"]


def test_docstrings_come_from_the_schema() -> None:
    assert dirk.Container.with_exec.__doc__ is not None
    assert "use_entrypoint:" in dirk.Container.with_exec.__doc__
    assert dirk.Directory.__doc__ == "A directory tree."
