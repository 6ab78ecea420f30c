"""The rules of `JSONValue` on decoded JSON: decoding, encoding, reading and setting fields.

Pure functions of Python values (what `json.loads` gives), so the resolvers in
`api/json_value.py` stay thin and these rules are tested without an engine. They follow
Dagger's: a lookup needs objects all along its path; setting a field makes (or replaces with)
objects along its path, and a non-object root becomes an object.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from dirk.errors import InvalidJSONError, JSONFieldNotFoundError, JSONTypeError

#: GraphQL's `Int` is a signed 32-bit integer.
INT_MIN, INT_MAX = -(2**31), 2**31 - 1


def decode(text: str, what: str = "the contents") -> Any:
    """The value `text` encodes; a clear error when it is not JSON."""
    try:
        return json.loads(text)
    except ValueError as exc:  # JSONDecodeError, and numbers Python refuses
        raise InvalidJSONError(
            f"{what} is not valid JSON: {exc}; pass a JSON-encoded value (a string needs its "
            'quotes: "\\"text\\"")'
        ) from None


def encode(value: Any) -> str:
    """Compact JSON (no spaces), non-ASCII kept as it is."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def pretty(value: Any, indent: str) -> str:
    """JSON with one member per line, each level indented by `indent`."""
    return json.dumps(value, indent=indent, ensure_ascii=False)


def kind(value: Any) -> str:
    """The JSON name of the value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _mismatch(value: Any, wanted: str, field: str) -> JSONTypeError:
    return JSONTypeError(
        f"the JSON value is {kind(value)}, not {wanted}: {field} needs {wanted} "
        f"(look at it with contents, or pick a member with field(path:) first)"
    )


def as_string(value: Any) -> str:
    if not isinstance(value, str):
        raise _mismatch(value, "a string", "asString")
    return value


def as_boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _mismatch(value, "a boolean", "asBoolean")
    return value


def as_integer(value: Any) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _mismatch(value, "an integer", "asInteger")
    if not INT_MIN <= value <= INT_MAX:
        raise JSONTypeError(
            f"the JSON integer {value} does not fit in a GraphQL Int (32 bits); read it with "
            "contents instead"
        )
    return value


def as_array(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise _mismatch(value, "an array", "asArray")
    return value


def fields(value: Any) -> list[str]:
    if not isinstance(value, dict):
        raise _mismatch(value, "an object", "fields")
    return list(value)


def lookup(value: Any, path: Sequence[str]) -> Any:
    """The member at `path` (field names from the root)."""
    current = value
    for depth, name in enumerate(path):
        where = ".".join(path[:depth]) or "the root"
        if not isinstance(current, dict):
            raise JSONTypeError(
                f"cannot look up field {name!r}: {where} is {kind(current)}, not an object"
            )
        if name not in current:
            raise JSONFieldNotFoundError(
                f"no field {name!r} in {where}; it has {sorted(current) or 'no fields'}"
            )
        current = current[name]
    return current


def with_field(value: Any, path: Sequence[str], member: Any) -> Any:
    """A copy of `value` with `member` at `path`: objects are made (or replace other values)
    along the way; an empty path gives `member` itself."""
    if not path:
        return member
    root: dict[str, Any] = dict(value) if isinstance(value, dict) else {}
    current = root
    for name in path[:-1]:
        below = current.get(name)
        below = dict(below) if isinstance(below, dict) else {}
        current[name] = below
        current = below
    current[path[-1]] = member
    return root
