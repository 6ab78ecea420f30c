"""Typed errors across the wire: each `dirk.errors` class leaves the engine with its `code` and
comes back in dirk's SDK as the same class.

The table is derived from the hierarchy (every class in `dirk.errors` has its own `code`), so a
new error class needs nothing here. The shapes, in `errors[i].extensions`:

- a failed exec (`ExecError` and its subclasses): Dagger's shape, which the released Dagger SDKs
  turn into their `ExecError`: `{"_type": "EXEC_ERROR", "cmd", "exitCode", "stdout", "stderr"}`;
  a subclass adds `"subtype": <its code>` (e.g. `COMMAND_NOT_FOUND`).
- any other dirk error: `{"_type": <its code>}` (a `SolveError` adds `"step"`). Dagger's SDKs
  see a plain query error, as they would from Dagger.

Errors that are not dirk's (a GraphQL validation error, a bug) carry no extensions. This module
imports nothing heavy: the SDK uses it to decode.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from dirk import errors
from dirk.errors import (
    OUTPUT_TAIL_BYTES,
    DirkError,
    ExecError,
    QueryError,
    QueryErrorValue,
    SolveError,
)

#: Dagger's `_type` of a failed exec; the released SDKs dispatch on it.
EXEC_ERROR = "EXEC_ERROR"


@functools.cache
def error_classes() -> dict[str, type[DirkError]]:
    """Code -> class, for every error class of `dirk.errors` (aliases counted once)."""
    table: dict[str, type[DirkError]] = {}
    for value in vars(errors).values():
        if isinstance(value, type) and issubclass(value, DirkError):
            known = table.setdefault(value.code, value)
            if known is not value:
                raise AssertionError(f"{known.__name__} and {value.__name__} share {value.code}")
    return table


def tail(text: str, limit: int = OUTPUT_TAIL_BYTES) -> str:
    """The last `limit` bytes of `text` (UTF-8), cut on a character boundary."""
    data = text.encode("utf-8", errors="replace")
    if len(data) <= limit:
        return text
    return data[-limit:].decode("utf-8", errors="ignore")


def extensions_for(error: DirkError) -> dict[str, Any]:
    """The `extensions` an error leaves the engine with."""
    if isinstance(error, ExecError):
        extensions: dict[str, Any] = {
            "_type": EXEC_ERROR,
            "cmd": list(error.command),
            "exitCode": error.exit_code,
            "stdout": tail(error.stdout),
            "stderr": tail(error.stderr),
        }
        if error.code != EXEC_ERROR:
            extensions["subtype"] = error.code
        return extensions
    if isinstance(error, SolveError):
        return {"_type": error.code, "step": error.step}
    return {"_type": error.code}


def error_from_wire(
    message: str,
    path: Sequence[str | int],
    extensions: Mapping[str, Any],
    entries: Sequence[QueryErrorValue] = (),
) -> QueryError:
    """The exception for an error the engine answered: the class its code names (a
    `QueryError` either way: it failed a query), or `QueryError` for a code this SDK does not
    know (a newer engine) and for errors without one."""
    kind = extensions.get("_type")
    code = extensions.get("subtype", kind) if kind == EXEC_ERROR else kind
    cls = error_classes().get(str(code)) if isinstance(code, str) else None
    if kind == EXEC_ERROR:
        exec_cls = cls if cls is not None and issubclass(cls, ExecError) else ExecError
        return exec_cls(
            command=[str(arg) for arg in extensions.get("cmd") or []],
            exit_code=_int(extensions.get("exitCode")),
            stdout=str(extensions.get("stdout", "")),
            stderr=str(extensions.get("stderr", "")),
            message=message,
            path=path,
            errors=entries,
        )
    if cls is None or issubclass(cls, ExecError):  # an exec subtype without its fields
        return QueryError(message, path, errors=entries)
    answered = as_answered(cls)
    error = answered.__new__(answered, message)
    QueryError.__init__(error, message, path, errors=entries)
    if isinstance(error, SolveError):
        error.step = str(extensions.get("step", ""))
        error.cause = None
    return error


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


_ANSWERED: dict[type[DirkError], type[QueryError]] = {}


def as_answered(cls: type[DirkError]) -> type[QueryError]:
    """`cls` as an error the engine answered: itself when it is a `QueryError` already
    (`QueryError` for `DirkError`), else a subclass of both (a `StateError` that failed a query
    is caught by `except QueryError` too), with the same name and code."""
    if issubclass(cls, QueryError):
        return cls
    if issubclass(QueryError, cls):  # DirkError itself
        return QueryError
    answered = _ANSWERED.get(cls)
    if answered is None:
        namespace = {
            "__module__": cls.__module__,
            "__qualname__": cls.__qualname__,
            "__doc__": cls.__doc__,
            "code": cls.code,
        }
        answered = _ANSWERED.setdefault(cls, type(cls.__name__, (cls, QueryError), namespace))
    return answered
