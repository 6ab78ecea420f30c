"""`Query.file`, `Query.id`, `Query.json`, `JSONValue` and `File.asJSON` against a stand-in
solver, and the JSON rules of `api/json_data.py`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dirk.api import json_data
from dirk.errors import (
    InvalidArgumentError,
    InvalidJSONError,
    JSONFieldNotFoundError,
    JSONTypeError,
)
from dirk.solver.ops import MkFile, Ref, Scratch

from .api_fakes import Api

pytestmark = pytest.mark.anyio

DOC = {"name": "dirk", "n": 3, "ok": True, "tags": ["a", "b"], "build": {"target": "x"}}


@pytest.fixture
def api(tmp_path: Path) -> Api:
    return Api(tmp_path)


async def error_of(api: Api, query: str, **variables: Any) -> BaseException:
    result = await api.run(query, **variables)
    assert result.errors, result.data
    original = result.errors[0].original_error
    assert original is not None
    return original


# --- Query.file ----------------------------------------------------------------------------------


async def test_query_file_is_a_new_file_on_scratch(api: Api) -> None:
    data = await api.data('{ file(name: "a.txt", contents: "hi\\n") { id name } }')
    f = api.value(data["file"]["id"])
    assert f.path == "/a.txt" and data["file"]["name"] == "a.txt"
    assert f.ref.op == MkFile(Ref(Scratch()), "/a.txt", b"hi\n", mode=0o644)
    data = await api.data('{ file(name: "k", contents: "", permissions: 384) { id } }')
    assert api.value(data["file"]["id"]).ref.op.mode == 0o600


@pytest.mark.parametrize("name", ["", "a/b", "..", "."])
async def test_query_file_needs_a_plain_name(api: Api, name: str) -> None:
    error = await error_of(
        api,
        'query($n: String!) { file(name: $n, contents: "x") { id } }',
        n=name,
    )
    assert isinstance(error, InvalidArgumentError) and "one path component" in str(error)


# --- Query.id ------------------------------------------------------------------------------------


async def test_query_id_loads_back_as_the_root(api: Api) -> None:
    first = (await api.data("{ id }"))["id"]
    assert first == (await api.data("{ id }"))["id"] and first.startswith("dirk:Query:")
    data = await api.data(
        "query($id: ID!) { node(id: $id) { id ... on Query { version"
        ' file(name: "f", contents: "x") { id } } } }',
        id=first,
    )
    assert data["node"]["id"] == first
    direct = await api.data('{ file(name: "f", contents: "x") { id } }')
    assert data["node"]["file"]["id"] == direct["file"]["id"]  # the same root, the same objects


async def test_query_id_is_not_another_type(api: Api) -> None:
    qid = (await api.data("{ id }"))["id"]
    error = await error_of(api, "query($id: ID!) { loadFileFromID(id: $id) { id } }", id=qid)
    assert "is a Query, but a File is expected" in str(error)


# --- JSONValue -----------------------------------------------------------------------------------


async def test_json_starts_as_null_and_builds_values(api: Api) -> None:
    data = await api.data(
        "{ json { contents"
        ' s: newString(value: "hé") { contents asString }'
        " i: newInteger(value: -7) { contents asInteger }"
        " b: newBoolean(value: true) { contents asBoolean } } }"
    )
    j = data["json"]
    assert j["contents"] == "null"
    assert j["s"] == {"contents": '"hé"', "asString": "hé"}
    assert j["i"] == {"contents": "-7", "asInteger": -7}
    assert j["b"] == {"contents": "true", "asBoolean": True}


async def test_with_contents_fields_field_and_array(api: Api) -> None:
    data = await api.data(
        "query($c: JSON!) { json { withContents(contents: $c) { contents fields"
        ' pretty: contents(pretty: true, indent: "\\t")'
        ' name: field(path: ["name"]) { asString }'
        ' target: field(path: ["build", "target"]) { asString contents }'
        ' tags: field(path: ["tags"]) { asArray { asString id } } } } }',
        c=json.dumps(DOC),
    )
    v = data["json"]["withContents"]
    assert v["contents"] == json.dumps(DOC)  # given text, kept as it is
    assert v["fields"] == ["name", "n", "ok", "tags", "build"]
    assert json.loads(v["pretty"]) == DOC and '\n\t"name": "dirk",' in v["pretty"]
    assert v["name"]["asString"] == "dirk"
    assert v["target"] == {"asString": "x", "contents": '"x"'}
    items = v["tags"]["asArray"]
    assert [i["asString"] for i in items] == ["a", "b"]
    assert items[0]["id"] != items[1]["id"]
    again = await api.data(
        "query($id: ID!) { loadJSONValueFromID(id: $id) { asString } }", id=items[1]["id"]
    )
    assert again["loadJSONValueFromID"]["asString"] == "b"


async def test_with_field_sets_members_through_objects(api: Api) -> None:
    value = (await api.data("{ json { newInteger(value: 5) { id } } }"))["json"]["newInteger"]["id"]
    data = await api.data(
        "query($v: ID!, $c: JSON!) { json { withContents(contents: $c) {"
        ' withField(path: ["build", "jobs"], value: $v) {'
        '  withField(path: ["name", "first"], value: $v) { contents } } }'
        ' root: withField(path: ["a"], value: $v) { contents } } }',
        v=value,
        c=json.dumps(DOC),
    )
    out = json.loads(data["json"]["withContents"]["withField"]["withField"]["contents"])
    assert out["build"] == {"target": "x", "jobs": 5}
    assert out["name"] == {"first": 5}  # a string replaced by an object on the way
    assert json.loads(data["json"]["root"]["contents"]) == {"a": 5}  # null became an object


async def test_bad_json_and_wrong_types_are_clear_errors(api: Api) -> None:
    bad = await error_of(api, '{ json { withContents(contents: "{nope") { id } } }')
    assert isinstance(bad, InvalidJSONError) and "not valid JSON" in str(bad)
    q = "query($c: JSON!) { json { withContents(contents: $c) { %s } } }"
    wrong = await error_of(api, q % "asString", c='{"a": 1}')
    assert isinstance(wrong, JSONTypeError) and "is an object, not a string" in str(wrong)
    wrong = await error_of(api, q % "asInteger", c="1.5")
    assert isinstance(wrong, JSONTypeError) and "not an integer" in str(wrong)
    wrong = await error_of(api, q % "fields", c="[1]")
    assert isinstance(wrong, JSONTypeError) and "is an array, not an object" in str(wrong)
    missing = await error_of(api, q % 'field(path: ["a", "zz"]) { contents }', c='{"a": {"b": 1}}')
    assert isinstance(missing, JSONFieldNotFoundError) and "no field 'zz' in a" in str(missing)


# --- File.asJSON ---------------------------------------------------------------------------------


async def test_file_as_json_reads_the_file_only_for_a_leaf(api: Api) -> None:
    api.solver.files["/conf.json"] = json.dumps(DOC).encode()
    data = await api.data(
        '{ file(name: "conf.json", contents: "ignored by the fake") {'
        ' asJSON { id field(path: ["build"]) { id } } } }'
    )
    assert api.solver.solved == []  # building (and IDs) read nothing
    fid = data["file"]["asJSON"]["field"]["id"]
    out = await api.data(
        "query($id: ID!) { loadJSONValueFromID(id: $id) { contents fields } }", id=fid
    )
    assert out["loadJSONValueFromID"] == {"contents": '{"target":"x"}', "fields": ["target"]}


async def test_file_as_json_of_a_non_json_file(api: Api) -> None:
    api.solver.files["/x"] = b"not json"
    error = await error_of(api, '{ file(name: "x", contents: "") { asJSON { contents } } }')
    assert isinstance(error, InvalidJSONError) and "file /x is not valid JSON" in str(error)


# --- the rules alone -----------------------------------------------------------------------------


def test_integers_bounded_and_booleans_are_not_integers() -> None:
    assert json_data.as_integer(2.0) == 2
    with pytest.raises(JSONTypeError, match="32 bits"):
        json_data.as_integer(2**31)
    with pytest.raises(JSONTypeError, match="a boolean, not an integer"):
        json_data.as_integer(True)


def test_with_field_leaves_the_original_alone() -> None:
    doc = {"a": {"b": 1}}
    assert json_data.with_field(doc, ["a", "c"], 2) == {"a": {"b": 1, "c": 2}}
    assert doc == {"a": {"b": 1}}
    assert json_data.with_field(doc, [], [1]) == [1]
