"""The resolvers of each schema field, registered by the modules of each type.

Two kinds: `builds` for fields that return an object (memoised by call identity, so a chain
re-sent for every leaf is built once) and `leaf` for fields that return data (strings, numbers,
lists of objects), optionally memoised by (parent identity, field, arguments).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import attrs

from dirk.api.context import RequestContext
from dirk.api.values import Handle, Value

Args = dict[str, Any]
Builder = Callable[[RequestContext, Handle | None, Args], Awaitable[Value]]
LeafResolver = Callable[[RequestContext, Handle | None, Args], Awaitable[Any]]


@attrs.frozen
class Leaf:
    resolve: LeafResolver
    memo: bool


BUILDERS: dict[tuple[str, str], Builder] = {}
LEAVES: dict[tuple[str, str], Leaf] = {}
#: Builders whose call is made afresh (a new object, not the session's memo) when the named
#: boolean argument is true: Dagger's `noCache` on reads of the host.
FRESH_WHEN: dict[tuple[str, str], str] = {}

B = TypeVar("B", bound=Builder)
L = TypeVar("L", bound=LeafResolver)


def builds(type_name: str, field: str, *, fresh_when: str = "") -> Callable[[B], B]:
    """Registers a builder of the object `type_name.field` returns; with `fresh_when`, a call
    whose argument of that name is true builds a new object every time."""

    def register(fn: B) -> B:
        BUILDERS[(type_name, field)] = fn
        if fresh_when:
            FRESH_WHEN[(type_name, field)] = fresh_when
        return fn

    return register


def leaf(type_name: str, field: str, *, memo: bool = True) -> Callable[[L], L]:
    """Registers the resolver of a data field; `memo` keeps its result for the session."""

    def register(fn: L) -> L:
        LEAVES[(type_name, field)] = Leaf(fn, memo)
        return fn

    return register
