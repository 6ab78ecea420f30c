"""`Query`: the roots of every chain, plus loading objects back from their IDs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from dirk.api.context import RequestContext

if TYPE_CHECKING:
    from dirk.api.context import Info
from dirk.api.ids import QUERY_IDENT, format_id
from dirk.api.registry import Args, leaf
from dirk.api.values import Handle
from dirk.versions import engine_version


@leaf("Query", "version", memo=False)
async def query_version(ctx: RequestContext, parent: Handle | None, args: Args) -> str:
    return engine_version()


async def node(_source: Any, info: Info, /, **args: Any) -> Handle:
    """`Query.node(id:)`: any object of this session; fragments pick fields by its type."""
    ctx: RequestContext = info.context
    return ctx.table.load(args["id"])


def loader(type_name: str) -> Callable[..., Awaitable[Handle]]:
    """The resolver of `Query.load<Type>FromID(id:)`."""

    async def load(_source: Any, info: Info, /, **args: Any) -> Handle:
        ctx: RequestContext = info.context
        return ctx.table.load(args["id"], type_name)

    return load


def object_id(source: Handle | None, _info: Info, /, **_args: Any) -> str:
    """The `id` of every object: made from its call identity, so computing it runs nothing.
    The root (`Query.id`) has one ID, which loads back as the root."""
    if not isinstance(source, Handle):
        return format_id("Query", QUERY_IDENT)
    return format_id(source.type_name, source.ident)
