"""Query text the SDK sends: one plain field per level, literals GraphQL parses back exactly."""

from __future__ import annotations

from typing import Any

import pytest
from graphql import parse, value_from_ast_untyped

import dirk
from dirk.sdk.query import Call, extract, render_query, render_value

from .sdk_fake_engine import FakeEngine, use_fake_engine

TRICKY = [
    "plain",
    'say "hi"',
    "back\\slash",
    "line\nbreak\r\ttab",
    "\x00\x01\x1f control",
    "ünïcødé ✓ 😀",
    "${HOME} {braces} #notacomment",
    "",
]


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> FakeEngine:
    return use_fake_engine(monkeypatch)


@pytest.mark.parametrize("text", TRICKY)
def test_string_literal_round_trips_through_graphql(text: str) -> None:
    document = parse(f"{{ f(a: {render_value(text)}) }}")
    argument = document.definitions[0].selection_set.selections[0].arguments[0]  # type: ignore[attr-defined]
    assert value_from_ast_untyped(argument.value) == text


def test_values_render_as_graphql_literals() -> None:
    assert render_value(["echo", "a b"]) == '["echo", "a b"]'
    assert render_value(()) == "[]"
    assert render_value(True) == "true"
    assert render_value(False) == "false"
    assert render_value(420) == "420"
    assert render_value(None) == "null"
    assert render_value(dirk.ReturnType.ANY) == "ANY"  # enums go out bare
    with pytest.raises(TypeError, match="cannot send"):
        render_value(object())


def test_chain_nests_one_field_per_level() -> None:
    chain = [
        Call("container"),
        Call("from", (("address", "alpine"),)),
        Call("withExec", (("args", ("sh", "-c", "echo hi")),)),
        Call("stdout"),
    ]
    assert render_query(chain) == (
        '{ container { from(address: "alpine") { withExec(args: ["sh", "-c", "echo hi"]) '
        "{ stdout } } } }"
    )
    assert render_query([Call("node", (("id", "x"),), on="File"), Call("contents")]) == (
        '{ node(id: "x") { ... on File { contents } } }'
    )
    assert render_query([Call("container"), Call("envVariables")], ["id", "name"]) == (
        "{ container { envVariables { id name } } }"
    )


def test_extract_reports_a_null_parent() -> None:
    chain = [Call("container"), Call("file", (("path", "/x"),)), Call("contents")]
    assert extract({"container": {"file": {"contents": "c"}}}, chain) == "c"
    with pytest.raises(dirk.errors.QueryError, match=r"container\.file is null"):
        extract({"container": {"file": None}}, chain)


def _sent(engine: FakeEngine, build: Any) -> str:
    with dirk.Connection() as client:
        build(client)
    return str(engine.queries[-1])


def test_defaults_are_omitted_and_others_sent(engine: FakeEngine) -> None:
    engine.leaves["stdout"] = ""
    query = _sent(
        engine,
        lambda c: (
            c.container()
            .with_exec(["a"], use_entrypoint=False, expect=dirk.ReturnType.SUCCESS, stdin="")
            .stdout()
        ),
    )
    assert 'withExec(args: ["a"]) {' in query
    query = _sent(
        engine,
        lambda c: (
            c.container()
            .with_exec(
                ["a"], expect=dirk.ReturnType.ANY, stdin="in", insecure_root_capabilities=True
            )
            .stdout()
        ),
    )
    assert (
        'withExec(args: ["a"], stdin: "in", expect: ANY, insecureRootCapabilities: true)' in query
    )


def test_enum_and_object_arguments(engine: FakeEngine) -> None:
    engine.leaves["stdout"] = ""
    query = _sent(
        engine,
        lambda c: (
            c.container()
            .with_mounted_cache(
                "/cache", c.cache_volume("pip"), sharing=dirk.CacheSharingMode.LOCKED
            )
            .stdout()
        ),
    )
    assert engine.queries[0] == '{ cacheVolume(key: "pip") { id } }'
    assert 'withMountedCache(path: "/cache", cache: "id-cacheVolume-1", sharing: LOCKED)' in query


def test_list_arguments_are_copied_when_the_call_is_made(engine: FakeEngine) -> None:
    engine.leaves["stdout"] = ""
    args = ["echo", "1"]

    def build(c: Any) -> None:
        ctr = c.container().with_exec(args)
        args.append("2")
        ctr.stdout()

    assert 'withExec(args: ["echo", "1"])' in _sent(engine, build)


def test_python_keywords_get_a_trailing_underscore() -> None:
    assert hasattr(dirk.Container, "from_")
    assert not hasattr(dirk.Container, "from")
