"""GraphQL query text for a chain of calls, and the value at the end of the chain's answer.

A chain is what a lazy object has accumulated: `container` -> `from(address: ...)` ->
`withExec(args: [...])` -> `stdout`. It becomes one query nesting one plain field per level
(no aliases, no variables), the shape every Dagger SDK sends. Object arguments must already
be replaced by their ID strings.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from dirk.errors import QueryError
from dirk.sdk.callsite import Site

#: Argument values as the generated code passes them: (GraphQL name, value).
Args = tuple[tuple[str, Any], ...]


class Call:
    """One field selected on the previous call's result.

    `on` wraps the next level in an inline fragment (`node(id: ...) { ... on Container { } }`),
    which is how an object is re-loaded from its ID. Immutable; equal by field, arguments and
    fragment. (A plain class: every program makes these, and a dataclass would import
    `dataclasses` and `inspect` into every program's start.)
    """

    __slots__ = ("args", "field", "on", "site")

    field: str
    args: Args
    on: str | None
    #: The line of the user's program that made this call (failure reports); not compared.
    site: Site | None

    def __init__(
        self, field: str, args: Args = (), on: str | None = None, site: Site | None = None
    ) -> None:
        set_field = object.__setattr__
        set_field(self, "field", field)
        set_field(self, "args", args)
        set_field(self, "on", on)
        set_field(self, "site", site)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"a Call is immutable (tried to set {name!r})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Call):
            return NotImplemented
        return (self.field, self.args, self.on) == (other.field, other.args, other.on)

    def __hash__(self) -> int:
        return hash((self.field, self.args, self.on))

    def __repr__(self) -> str:
        return f"Call(field={self.field!r}, args={self.args!r}, on={self.on!r})"


class InputObject:
    """Base of the generated input object types: sent as a GraphQL object literal."""

    __slots__ = ()
    #: (Python attribute, GraphQL field) of each field, in the schema's order.
    _graphql_names: ClassVar[tuple[tuple[str, str], ...]] = ()

    def graphql_fields(self) -> dict[str, Any]:
        return {name: getattr(self, attr) for attr, name in self._graphql_names}


def render_value(value: Any) -> str:
    """A GraphQL literal for a Python argument value; enum members go out bare."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"GraphQL has no literal for the float {value!r}")
        return repr(value)
    if isinstance(value, str):
        # JSON string escapes are a subset of GraphQL's; raw non-ASCII is valid in both.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, InputObject):
        value = value.graphql_fields()
    if isinstance(value, Mapping):
        fields = ", ".join(f"{k}: {render_value(v)}" for k, v in value.items())
        return "{" + fields + "}"
    if isinstance(value, Sequence):
        return "[" + ", ".join(render_value(v) for v in value) + "]"
    raise TypeError(f"cannot send a {type(value).__name__} as a GraphQL argument: {value!r}")


def render_args(args: Args) -> str:
    if not args:
        return ""
    return "(" + ", ".join(f"{name}: {render_value(value)}" for name, value in args) + ")"


def render_query(chain: Sequence[Call], subfields: Sequence[str] = ()) -> str:
    """`{ a { b(x: 1) { c } } }` for the chain a, b(x: 1), c; `subfields` select below c."""
    if not chain:
        raise ValueError("an empty chain selects nothing")
    selection: str | None = " ".join(subfields) if subfields else None
    for call in reversed(chain):
        text = call.field + render_args(call.args)
        if selection is not None:
            inner = f"... on {call.on} {{ {selection} }}" if call.on else selection
            text = f"{text} {{ {inner} }}"
        selection = text
    return "{ " + str(selection) + " }"


def describe(chain: Sequence[Call]) -> str:
    """The chain's field names (`container.from.withExec.stdout`): safe to log, no arguments."""
    return ".".join(call.field for call in chain)


def extract(data: Any, chain: Sequence[Call]) -> Any:
    """The value the last call of `chain` selected, out of an answer's `data`."""
    value = data
    path: list[str | int] = []
    for call in chain:
        if not isinstance(value, Mapping) or call.field not in value:
            raise QueryError(
                f"the engine's answer has no {'.'.join(map(str, [*path, call.field]))!r}: "
                "the engine does not match this SDK's schema (upgrade one of them)",
                path,
            )
        value = value[call.field]
        path.append(call.field)
        if value is None and len(path) < len(chain):
            raise QueryError(f"{'.'.join(map(str, path))} is null", path)
    return value
