"""`EnvFile` (variables in `.env` format) and `Error` (a message with named values), and the
fields that make or use them.

An EnvFile built from a file reads it only when a field needs its variables, and `asFile` is
a step of its own, so building one (and asking for its ID) runs nothing. The `.env` rules are
in `dirk.solver.envfiles`.
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from dirk.api.container_ops import set_pair
from dirk.api.context import RequestContext
from dirk.api.ids import identity
from dirk.api.registry import Args, builds, leaf
from dirk.api.values import Container, EnvFile, EnvVariable, Error, ErrorValue, File, Handle
from dirk.solver import envfiles
from dirk.solver.ops import Ref, RenderEnvFile
from dirk.solver.treeops import ENV_FILE

Variable = tuple[str, str]  # name, value


async def _resolved(ctx: RequestContext, e: EnvFile) -> list[envfiles.Resolved]:
    text = None
    if e.source is not None:
        data = await ctx.solver.read_file(ctx.job, e.source.ref, e.source.path)
        text = data.decode("utf-8", errors="replace")
    return envfiles.resolve(text, e.edits, e.expand)


async def raw_variables(ctx: RequestContext, e: EnvFile) -> list[Variable]:
    """The variables in order, as written (after the edits)."""
    return [(name, raw) for name, raw, _ in await _resolved(ctx, e)]


async def variables(ctx: RequestContext, e: EnvFile, raw: bool = False) -> list[Variable]:
    """The variables in order: as written when `raw`, else unquoted and expanded."""
    return [
        (name, raw_value if raw else value) for name, raw_value, value in await _resolved(ctx, e)
    ]


def _env(parent: Handle | None) -> EnvFile:
    assert parent is not None and isinstance(parent.value, EnvFile)
    return parent.value


# --- EnvFile -----------------------------------------------------------------------------------


@builds("Query", "envFile")
async def query_env_file(ctx: RequestContext, parent: Handle | None, args: Args) -> EnvFile:
    return EnvFile(expand=args.get("expand") is not False)


@builds("File", "asEnvFile")
async def file_as_env_file(ctx: RequestContext, parent: Handle | None, args: Args) -> EnvFile:
    assert parent is not None and isinstance(parent.value, File)
    return EnvFile(source=parent.value, expand=args.get("expand") is not False)


@builds("EnvFile", "withVariable")
async def env_file_with_variable(ctx: RequestContext, parent: Handle | None, args: Args) -> EnvFile:
    e = _env(parent)
    return attrs.evolve(e, edits=(*e.edits, ("set", args["name"], args["value"])))


@builds("EnvFile", "withoutVariable")
async def env_file_without_variable(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> EnvFile:
    e = _env(parent)
    return attrs.evolve(e, edits=(*e.edits, ("unset", args["name"], "")))


@builds("EnvFile", "namespace")
async def env_file_namespace(ctx: RequestContext, parent: Handle | None, args: Args) -> EnvFile:
    e = _env(parent)
    return attrs.evolve(e, edits=(*e.edits, ("namespace", args["prefix"], "")))


@leaf("EnvFile", "variables")
async def env_file_variables(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> list[Handle]:
    assert parent is not None
    found = await variables(ctx, _env(parent), bool(args.get("raw")))
    handles = []
    for index, (name, value) in enumerate(found):
        ident = identity(parent.ident, "variables", {"index": index, "raw": args.get("raw")})
        handles.append(ctx.table.add(Handle("EnvVariable", ident, EnvVariable(name, value))))
    return handles


@leaf("EnvFile", "get")
async def env_file_get(ctx: RequestContext, parent: Handle | None, args: Args) -> str:
    found = dict(await variables(ctx, _env(parent), bool(args.get("raw"))))
    return found.get(args["name"], "")


@leaf("EnvFile", "exists")
async def env_file_exists(ctx: RequestContext, parent: Handle | None, args: Args) -> bool:
    return any(n == args["name"] for n, _ in await raw_variables(ctx, _env(parent)))


@builds("EnvFile", "asFile")
async def env_file_as_file(ctx: RequestContext, parent: Handle | None, args: Args) -> File:
    """The variables as a `.env` file, written by a step (nothing is read here)."""
    e = _env(parent)
    source = e.source
    op = RenderEnvFile(
        source.ref if source is not None else None,
        source.path if source is not None else "",
        e.edits,
        e.expand,
    )
    return File(Ref(op), ENV_FILE)


@builds("Container", "withEnvFileVariables")
async def container_with_env_file_variables(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Container:
    """Every variable of the env file set in the container (read when this is built)."""
    assert parent is not None and isinstance(parent.value, Container)
    c = parent.value
    source = ctx.load(args["source"], "EnvFile").value
    assert isinstance(source, EnvFile)
    env = c.env
    for name, value in await variables(ctx, source):
        env = set_pair(env, name, value)
    return attrs.evolve(c, env=env)


# --- Error -------------------------------------------------------------------------------------


def _error(parent: Handle | None) -> Error:
    assert parent is not None and isinstance(parent.value, Error)
    return parent.value


def _json_text(value: Any) -> str:
    """A JSON argument as JSON text: the SDKs send it as a string already."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


@builds("Query", "error")
async def query_error(ctx: RequestContext, parent: Handle | None, args: Args) -> Error:
    return Error(args["message"])


@builds("Error", "withValue")
async def error_with_value(ctx: RequestContext, parent: Handle | None, args: Args) -> Error:
    e = _error(parent)
    return attrs.evolve(e, values=(*e.values, (args["name"], _json_text(args["value"]))))


@leaf("Error", "message", memo=False)
async def error_message(ctx: RequestContext, parent: Handle | None, args: Args) -> str:
    return _error(parent).message


@leaf("Error", "values", memo=False)
async def error_values(ctx: RequestContext, parent: Handle | None, args: Args) -> list[Handle]:
    assert parent is not None
    handles = []
    for index, (name, value) in enumerate(_error(parent).values):
        ident = identity(parent.ident, "values", {"index": index})
        handles.append(ctx.table.add(Handle("ErrorValue", ident, ErrorValue(name, value))))
    return handles


@leaf("ErrorValue", "name", memo=False)
async def error_value_name(ctx: RequestContext, parent: Handle | None, args: Args) -> str:
    assert parent is not None and isinstance(parent.value, ErrorValue)
    return parent.value.name


@leaf("ErrorValue", "value", memo=False)
async def error_value_value(ctx: RequestContext, parent: Handle | None, args: Args) -> str:
    assert parent is not None and isinstance(parent.value, ErrorValue)
    return parent.value.value
