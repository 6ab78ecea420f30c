"""The executable schema: the SDL file with a resolver on every field.

Fields a module registered get its resolver, wrapped with the per-session memo; `id` fields
give the object's ID; every other field answers with a clear "not supported by dirk yet"
error, so a client using more of Dagger's API learns what is missing instead of seeing a
traceback.
"""

from __future__ import annotations

import re
import secrets
from typing import TYPE_CHECKING, Any

from graphql import (
    GraphQLField,
    GraphQLFieldResolver,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    get_named_type,
)
from graphql.language import IntValueNode, StringValueNode, ValueNode

# Importing the type modules registers their resolvers.
from dirk.api import (  # noqa: F401
    cache_volume,
    changeset,
    container,
    container_config,
    directory,
    directory_write,
    docker_store,
    engine_cache,
    envfile,
    exports,
    file,
    git,
    host,
    http,
    image_out,
    json_value,
    query,
    reads,
    secret,
    service,
    socket,
    terminal,
    tunnels,
)
from dirk.api.context import RequestContext
from dirk.api.dockerfile import resolver as _dockerfile  # noqa: F401

if TYPE_CHECKING:
    from dirk.api.context import Info
from dirk.api.ids import ROOT, canonical, identity
from dirk.api.registry import BUILDERS, FRESH_WHEN, LEAVES, Builder, Leaf
from dirk.api.table import LEAF_LIMIT
from dirk.api.validate import check_arguments
from dirk.api.values import Handle, QueryRoot
from dirk.errors import InvalidArgumentError, NotSupportedError
from dirk.schema import load_schema

Resolver = GraphQLFieldResolver
_LOAD_FROM_ID = re.compile(r"^load([A-Za-z]+)FromID$")


def build_schema() -> GraphQLSchema:
    """The schema of `dirk.schema` with dirk's resolvers attached."""
    widen_int_to_64_bits()
    schema = load_schema()
    for named in schema.type_map.values():
        if named.name.startswith("__"):
            continue
        if isinstance(named, GraphQLObjectType):
            for field_name, field in named.fields.items():
                field.resolve = _resolver(named.name, field_name, field)
        elif isinstance(named, GraphQLInterfaceType):
            named.resolve_type = _resolve_type
        elif isinstance(named, GraphQLScalarType) and named.name.endswith("ID"):
            _pass_strings_through(named)
    return schema


def _resolver(type_name: str, field_name: str, field: GraphQLField) -> Resolver:
    if field_name == "id":
        return query.object_id
    if (type_name, field_name) == ("Query", "node"):
        return query.node
    if (type_name, field_name) == ("Query", "setSecret"):
        return secret.set_secret
    if type_name == "Query" and (match := _LOAD_FROM_ID.match(field_name)):
        return query.loader(match.group(1))
    builder = BUILDERS.get((type_name, field_name))
    if builder is not None:
        fresh_when = FRESH_WHEN.get((type_name, field_name))
        return _memo_builder(type_name, field_name, field, builder, fresh_when)
    leaf = LEAVES.get((type_name, field_name))
    if leaf is not None:
        return _leaf(type_name, field_name, field, leaf)
    return _unsupported(type_name, field_name)


def _full_args(field: GraphQLField, args: dict[str, Any]) -> dict[str, Any]:
    """Every argument of the field: graphql-core already filled in the schema's defaults;
    arguments without a default that were left out are None."""
    return {name: args.get(name) for name in field.args}


def _memo_builder(
    type_name: str,
    field_name: str,
    field: GraphQLField,
    build: Builder,
    fresh_when: str | None = None,
) -> Resolver:
    returns: GraphQLNamedType = get_named_type(field.type)

    async def resolve(source: Any, info: Info, /, **args: Any) -> Handle:
        ctx: RequestContext = info.context
        parent = _parent(source)
        full = _full_args(field, args)
        if fresh_when and full.get(fresh_when):
            # A new identity per call: nothing memoised under the old one is reused.
            ident = identity(parent.ident if parent else ROOT, field_name, full)
            ident = identity(ident, "(fresh)", {"nonce": secrets.token_hex(16)})
            check_arguments(type_name, field_name, full)
            return ctx.table.add(Handle(returns.name, ident, await build(ctx, parent, full)))
        ident = identity(parent.ident if parent else ROOT, field_name, full)
        table = ctx.table
        known = table.objects.get(ident)
        if known is not None:
            return known

        async def make() -> Handle:
            check_arguments(type_name, field_name, full)  # once per identity: a memo hit passed
            return Handle(returns.name, ident, await build(ctx, parent, full))

        handle: Handle = await table.once(table.objects, ident, make)
        return handle

    return resolve


def _leaf(type_name: str, field_name: str, field: GraphQLField, leaf: Leaf) -> Resolver:
    async def resolve(source: Any, info: Info, /, **args: Any) -> Any:
        ctx: RequestContext = info.context
        parent = _parent(source)
        full = _full_args(field, args)
        if full:
            check_arguments(type_name, field_name, full)
        if not leaf.memo:
            return await leaf.resolve(ctx, parent, full)
        table = ctx.table
        key = (parent.ident if parent else ROOT, field_name, canonical(full))

        async def make() -> Any:
            return await leaf.resolve(ctx, parent, full)

        return await table.once(table.leaves, key, make, limit=LEAF_LIMIT)

    return resolve


def _parent(source: Any) -> Handle | None:
    """The parent object of a field; None for the root, also when it was loaded by its ID."""
    if isinstance(source, Handle) and not isinstance(source.value, QueryRoot):
        return source
    return None


def _unsupported(type_name: str, field_name: str) -> Resolver:
    def resolve(source: Any, info: Info, /, **args: Any) -> Any:
        raise NotSupportedError(f"{type_name}.{field_name} is not supported by dirk yet")

    return resolve


def widen_int_to_64_bits() -> None:
    """Make `Int` 64 bits wide, as Dagger's is (Go's int): file sizes, byte counts and
    nanosecond timestamps pass 2**31. graphql-core checks the spec's 32-bit range against
    these two bounds of its scalars module, read at each coercion; the engine's process
    serves no other GraphQL."""
    import graphql.type.scalars as scalars

    scalars.GRAPHQL_MAX_INT = 2**63 - 1
    scalars.GRAPHQL_MIN_INT = -(2**63)


def _resolve_type(value: Any, info: Info, abstract: Any) -> str:
    if not isinstance(value, Handle):
        raise InvalidArgumentError(f"cannot tell the type of {value!r}")
    return value.type_name


def _pass_strings_through(scalar: GraphQLScalarType) -> None:
    """Per-type ID scalars (`ContainerID`, ... in older Dagger schemas): opaque strings."""

    def parse_literal(node: ValueNode, _variables: Any = None) -> str:
        if isinstance(node, StringValueNode | IntValueNode):
            return node.value
        raise InvalidArgumentError(f"{scalar.name} must be a string")

    scalar.serialize = _to_str  # type: ignore[method-assign]
    scalar.parse_value = _to_str  # type: ignore[method-assign]
    scalar.parse_literal = parse_literal  # type: ignore[method-assign,assignment]


def _to_str(value: Any) -> str:
    return str(value)
