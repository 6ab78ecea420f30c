"""`Secret`: a name whose value stays in the session's table. The identity of a secret is keyed
by a per-session random key, so its ID reveals nothing about the value, and no operation or
cache key ever holds it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dirk.api.context import RequestContext

if TYPE_CHECKING:
    from dirk.api.context import Info
from dirk.api.ids import ROOT, keyed_identity
from dirk.api.registry import Args, leaf
from dirk.api.values import Handle, Secret


async def set_secret(_source: Any, info: Info, /, **args: Any) -> Handle:
    """`Query.setSecret`: resolved without the generic memo, whose identity would be a plain
    digest of the value."""
    ctx: RequestContext = info.context
    table = ctx.table
    name, plaintext = args["name"], args["plaintext"]
    ident = keyed_identity(table.secret_key, ROOT, "setSecret", {"name": name, "v": plaintext})
    table.secret_values.setdefault(ident, plaintext)
    return table.add(Handle("Secret", ident, Secret(name)))


def _secret(parent: Handle | None) -> Secret:
    assert parent is not None and isinstance(parent.value, Secret)
    return parent.value


@leaf("Secret", "name", memo=False)
async def secret_name(ctx: RequestContext, parent: Handle | None, args: Args) -> str:
    return _secret(parent).name


@leaf("Secret", "plaintext", memo=False)
async def secret_plaintext(ctx: RequestContext, parent: Handle | None, args: Args) -> str:
    assert parent is not None
    return ctx.table.secret_values[parent.ident]
