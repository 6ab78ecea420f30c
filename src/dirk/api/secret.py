"""`Secret`: a name (or URI) whose value stays in the session's `SecretStore`.

A secret's ID is keyed by a per-session random key, so it reveals nothing about the value, and
operations carry only a `SecretRef` (see `dirk.solver.ops`). API code that needs a value (an
exec's variables, registry auth, a Dockerfile secret mount) gets it with `secret_plaintext_of`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dirk.api.context import RequestContext

if TYPE_CHECKING:
    from dirk.api.context import Info
from dirk.api.registry import Args, builds, leaf
from dirk.api.values import Handle, Secret


async def set_secret(_source: Any, info: Info, /, **args: Any) -> Handle:
    """`Query.setSecret`: resolved without the generic memo, whose identity would be a plain
    digest of the value."""
    ctx: RequestContext = info.context
    table = ctx.table
    name: str = args["name"]
    entry = table.secrets.set_plaintext(name, args["plaintext"].encode())
    # The handle is a keyed digest of name and value: a fine identity, and it reveals nothing.
    return table.add(Handle("Secret", entry.ref.handle, Secret(entry.name, entry.uri, entry.ref)))


@builds("Query", "secret")
async def query_secret(ctx: RequestContext, parent: Handle | None, args: Args) -> Secret:
    entry = ctx.table.secrets.from_uri(args["uri"], args["cacheKey"])
    return Secret(entry.name, entry.uri, entry.ref)


async def load_secret(ctx: RequestContext, secret_id: object) -> Secret:
    """The `Secret` an ID argument names, its value read now (an unreadable one fails the
    call that uses it, with the reason), so steps can have it at run time."""
    value = ctx.load(secret_id, "Secret").value
    assert isinstance(value, Secret)
    await ctx.table.secrets.load(value.ref)
    return value


async def secret_plaintext_of(ctx: RequestContext, secret: Secret) -> bytes:
    """The value of `secret`, for API code that must hand it to something (never to an
    operation: put `secret.ref` there and let the step fetch it at run time)."""
    return await ctx.table.secrets.load(secret.ref)


def _secret(parent: Handle | None) -> Secret:
    assert parent is not None and isinstance(parent.value, Secret)
    return parent.value


@leaf("Secret", "name", memo=False)
async def secret_name(ctx: RequestContext, parent: Handle | None, args: Args) -> str:
    return _secret(parent).name


@leaf("Secret", "uri", memo=False)
async def secret_uri(ctx: RequestContext, parent: Handle | None, args: Args) -> str:
    return _secret(parent).uri


@leaf("Secret", "plaintext", memo=False)
async def secret_plaintext(ctx: RequestContext, parent: Handle | None, args: Args) -> str:
    value = await secret_plaintext_of(ctx, _secret(parent))
    return value.decode("utf-8", errors="replace")
