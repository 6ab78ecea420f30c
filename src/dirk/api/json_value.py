"""`JSONValue` (a JSON value held in the object), `Query.json` and `File.asJSON`.

Building a JSONValue runs nothing: one made from a file reads it (through the solver) only
when a leaf needs the value, and the lookups and edits of a chain are kept as steps applied
then (`values.JSONValue`). The JSON rules are in `api/json_data.py`.
"""

from __future__ import annotations

from typing import Any

import attrs

from dirk.api import json_data
from dirk.api.context import RequestContext
from dirk.api.ids import identity
from dirk.api.registry import Args, builds, leaf
from dirk.api.values import File, Handle, JSONValue


def _json(parent: Handle | None) -> JSONValue:
    assert parent is not None and isinstance(parent.value, JSONValue)
    return parent.value


async def decoded(ctx: RequestContext, j: JSONValue) -> Any:
    """The value `j` stands for: its text or file decoded, then its steps applied."""
    if j.source is not None:
        data = await ctx.solver.read_file(ctx.job, j.source.ref, j.source.path)
        value = json_data.decode(data.decode("utf-8", errors="replace"), f"file {j.source.path}")
    else:
        value = json_data.decode(j.text)
    for step in j.steps:
        if len(step) == 2:
            value = json_data.lookup(value, step[1])
        else:
            assert len(step) == 3
            value = json_data.with_field(value, step[1], await decoded(ctx, step[2]))
    return value


def _literal(value: Any) -> JSONValue:
    return JSONValue(json_data.encode(value))


@builds("Query", "json")
async def query_json(ctx: RequestContext, parent: Handle | None, args: Args) -> JSONValue:
    return JSONValue()


@builds("File", "asJSON")
async def file_as_json(ctx: RequestContext, parent: Handle | None, args: Args) -> JSONValue:
    assert parent is not None and isinstance(parent.value, File)
    return JSONValue(source=parent.value)


@leaf("JSONValue", "asArray")
async def json_as_array(ctx: RequestContext, parent: Handle | None, args: Args) -> list[Handle]:
    assert parent is not None
    items = json_data.as_array(await decoded(ctx, _json(parent)))
    handles = []
    for index, item in enumerate(items):
        ident = identity(parent.ident, "asArray", {"index": index})
        handles.append(ctx.table.add(Handle("JSONValue", ident, _literal(item))))
    return handles


@leaf("JSONValue", "asBoolean")
async def json_as_boolean(ctx: RequestContext, parent: Handle | None, args: Args) -> bool:
    return json_data.as_boolean(await decoded(ctx, _json(parent)))


@leaf("JSONValue", "asInteger")
async def json_as_integer(ctx: RequestContext, parent: Handle | None, args: Args) -> int:
    return json_data.as_integer(await decoded(ctx, _json(parent)))


@leaf("JSONValue", "asString")
async def json_as_string(ctx: RequestContext, parent: Handle | None, args: Args) -> str:
    return json_data.as_string(await decoded(ctx, _json(parent)))


@leaf("JSONValue", "contents")
async def json_contents(ctx: RequestContext, parent: Handle | None, args: Args) -> str:
    j = _json(parent)
    if args["pretty"]:
        return json_data.pretty(await decoded(ctx, j), args["indent"] or "")
    if j.source is None and not j.steps:
        return j.text  # as given (withContents keeps the client's text)
    return json_data.encode(await decoded(ctx, j))


@builds("JSONValue", "field")
async def json_field(ctx: RequestContext, parent: Handle | None, args: Args) -> JSONValue:
    j = _json(parent)
    return attrs.evolve(j, steps=(*j.steps, ("field", tuple(args["path"]))))


@leaf("JSONValue", "fields")
async def json_fields(ctx: RequestContext, parent: Handle | None, args: Args) -> list[str]:
    return json_data.fields(await decoded(ctx, _json(parent)))


@builds("JSONValue", "newBoolean")
async def json_new_boolean(ctx: RequestContext, parent: Handle | None, args: Args) -> JSONValue:
    return _literal(bool(args["value"]))


@builds("JSONValue", "newInteger")
async def json_new_integer(ctx: RequestContext, parent: Handle | None, args: Args) -> JSONValue:
    return _literal(int(args["value"]))


@builds("JSONValue", "newString")
async def json_new_string(ctx: RequestContext, parent: Handle | None, args: Args) -> JSONValue:
    return _literal(str(args["value"]))


@builds("JSONValue", "withContents")
async def json_with_contents(ctx: RequestContext, parent: Handle | None, args: Args) -> JSONValue:
    text = args["contents"]
    if not isinstance(text, str):  # a JSON scalar sent as a structure, not as text
        text = json_data.encode(text)
    json_data.decode(text, "withContents' contents")
    return JSONValue(text)


@builds("JSONValue", "withField")
async def json_with_field(ctx: RequestContext, parent: Handle | None, args: Args) -> JSONValue:
    j = _json(parent)
    member = ctx.load(args["value"], "JSONValue").value
    assert isinstance(member, JSONValue)
    return attrs.evolve(j, steps=(*j.steps, ("set", tuple(args["path"]), member)))
