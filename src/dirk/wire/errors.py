"""How the engine writes errors on the wire: always JSON, shaped like Dagger's.

A GraphQL error is `{"message", "locations", "path"}` (graphql-core's formatting); a dirk error
adds `extensions` with its code (`dirk.wire.codes`): a failed exec in Dagger's `EXEC_ERROR`
shape, which the official SDKs turn into their `ExecError`, anything else as `{"_type": code}`,
which dirk's SDK turns back into the same `dirk.errors` class.
"""

from __future__ import annotations

from typing import Any

from graphql import GraphQLError

from dirk.errors import DirkError, ExecError
from dirk.wire.codes import extensions_for

#: The JSON body of an error answer: no data, one or more errors.
ErrorBody = dict[str, Any]


def error_body(message: str) -> ErrorBody:
    """A complete answer body for a request that failed before any GraphQL ran."""
    return {"data": None, "errors": [{"message": message}]}


def leaves(error: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, or `error` itself."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaves(inner)]
    return [error]


def _behind(error: BaseException | None) -> list[BaseException]:
    """`error` and the exceptions behind it, nearest first: through `SolveError.cause`,
    `__cause__`, a GraphQL error's original error and task-group exception groups."""
    seen: set[int] = set()
    found: list[BaseException] = []
    pending = [error] if error is not None else []
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        found.append(current)
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        elif isinstance(current, GraphQLError):
            pending.extend([current.original_error] if current.original_error else [])
        else:
            pending.extend(e for e in (getattr(current, "cause", None), current.__cause__) if e)
    return found


def find_exec_error(error: BaseException | None) -> ExecError | None:
    """The `ExecError` behind `error`, through wrappers."""
    return next((e for e in _behind(error) if isinstance(e, ExecError)), None)


def find_dirk_error(error: BaseException | None) -> DirkError | None:
    """The error whose code `error` leaves with: a failed exec wherever it is, else the
    nearest dirk error (a task group's first)."""
    behind = _behind(error)
    exec_error = next((e for e in behind if isinstance(e, ExecError)), None)
    return exec_error or next((e for e in behind if isinstance(e, DirkError)), None)


def format_error(error: GraphQLError) -> dict[str, Any]:
    """One entry of `errors`: message, locations, path, and extensions for a dirk error.

    A failed exec keeps its one-line message (with `exit code: N`); its output goes into the
    extensions only, as Dagger does.
    """
    formatted: dict[str, Any] = dict(error.formatted)
    original = error.original_error
    dirk_error = find_dirk_error(original)
    if isinstance(dirk_error, ExecError):
        formatted["message"] = dirk_error.message
    elif isinstance(original, BaseExceptionGroup):
        # A task group's failure: say what failed inside it, not "unhandled errors in a TaskGroup".
        messages = dict.fromkeys(str(leaf) or type(leaf).__name__ for leaf in leaves(original))
        formatted["message"] = "; ".join(messages)
    elif not formatted.get("message"):
        formatted["message"] = type(original).__name__ if original else "unknown error"
    if dirk_error is not None:
        formatted["extensions"] = {
            **formatted.get("extensions", {}),
            **extensions_for(dirk_error),
        }
    return formatted
