"""Validation by shape (`dirk.wire.shapes`): a document differing from a validated one only in
its strings' contents gets the same verdict, and the engine does not validate it again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from graphql import GraphQLScalarType, parse, specified_scalar_types, validate
from hypothesis import given, settings
from hypothesis import strategies as st

from dirk.api.schema import build_schema
from dirk.wire import server as server_module
from dirk.wire.shapes import SCALARS_TAKING_ANY_STRING, ValidShapes, shape_of
from tests.unit.wire_standin import basic, standin_server

SCHEMA = build_schema()

#: Documents with string slots where dirk's schema takes a String, an ID, a custom scalar, an
#: enum or an Int (the last two are wrong whatever the string holds), and a block string.
TEMPLATES = [
    "{ container(platform: %s) { withEnvVariable(name: %s, value: %s) { id } } }",
    "{ http(url: %s, permissions: %s) { id } }",
    "{ cacheVolume(key: %s, sharing: %s) { id } }",
    "{ loadContainerFromID(id: %s) { id } }",
    "{ container { withExec(args: [%s, %s]) { stdout } } }",
    "{ container { withExec(args: %s, redirectStdout: %s) { stdout } } }",
]


def _fill(template: str, strings: list[str]) -> str:
    count = template.count("%s")
    return template % tuple(json.dumps(s) for s in (strings * count)[:count])


def test_documents_that_differ_only_in_strings_share_a_shape() -> None:
    a = parse('{ container { withEnvVariable(name: "A", value: "1") { id } } }')
    b = parse('{ container { withEnvVariable(name: "B", value: """x\ny""") { id } } }')
    assert shape_of(a) == shape_of(b)


@pytest.mark.parametrize(
    "other",
    [
        '{ container { withEnvVariable(name: "A", value: "1", expand: true) { id } } }',
        '{ container { withEnvVariable(name: "A", value: 1) { id } } }',
        '{ container { withEnvVariable(name: "A", value: "1") { stdout } } }',
        '{ container { withEnvVariable(nam: "A", value: "1") { id } } }',
        '{ container { withEnvVariable(name: $a, value: "1") { id } } }',
    ],
)
def test_anything_but_string_contents_changes_the_shape(other: str) -> None:
    base = parse('{ container { withEnvVariable(name: "A", value: "1") { id } } }')
    assert shape_of(parse(other)) != shape_of(base)


def test_every_custom_scalar_takes_any_string_literal() -> None:
    """The assumption the shapes rest on. A new custom scalar fails here until its literal
    parsing is known not to look at a string's contents (then add it to the set)."""
    custom = {
        name
        for name, named in SCHEMA.type_map.items()
        if isinstance(named, GraphQLScalarType)
        and name not in specified_scalar_types
        and not name.endswith("ID")
    }
    assert custom == SCALARS_TAKING_ANY_STRING
    for name in custom:
        scalar = SCHEMA.type_map[name]
        assert type(scalar).parse_literal is GraphQLScalarType.parse_literal


@settings(max_examples=60, deadline=None)
@given(
    template=st.sampled_from(TEMPLATES),
    strings=st.lists(st.text(max_size=12), min_size=1, max_size=3),
)
def test_validation_does_not_depend_on_what_strings_hold(template: str, strings: list[str]) -> None:
    blank = validate(SCHEMA, parse(_fill(template, [""])))
    filled = validate(SCHEMA, parse(_fill(template, strings)))
    assert bool(blank) == bool(filled)


def test_the_bound_keeps_the_most_recent_shapes() -> None:
    shapes = ValidShapes(max_chars=10, max_entry_chars=8)
    shapes.add("aaaa")
    shapes.add("bbbb")
    assert "aaaa" in shapes  # now the most recently used
    shapes.add("cccc")
    assert "bbbb" not in shapes
    assert "aaaa" in shapes and "cccc" in shapes
    shapes.add("x" * 9)
    assert "x" * 9 not in shapes


@pytest.mark.anyio
async def test_the_engine_validates_a_shape_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = server_module.validate

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(server_module, "validate", counting)
    server = standin_server()
    token = server.sessions.create(workdir=Path("/"), labels={}).token

    async def ask(client: TestClient[Any, Any], query: str) -> Any:
        response = await client.post("/query", json={"query": query}, headers=basic(token))
        return await response.json()

    async with TestClient(TestServer(server.app())) as client:
        for value in ("one", "two", "three"):
            assert await ask(client, f'{{ echo(text: "{value}") }}') == {"data": {"echo": value}}
        assert len(calls) == 1
        wrong = await ask(client, "{ echo(text: 1) }")
        assert "String cannot represent a non string value" in wrong["errors"][0]["message"]
        assert len(calls) == 2
