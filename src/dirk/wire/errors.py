"""How the engine writes errors on the wire: always JSON, shaped like Dagger's.

A GraphQL error is `{"message", "locations", "path"}` (graphql-core's formatting); a failed exec
adds Dagger's `EXEC_ERROR` extensions, which the official SDKs turn into their `ExecError`.
"""

from __future__ import annotations

from typing import Any

from graphql import GraphQLError

from dirk.errors import OUTPUT_TAIL_BYTES, ExecError

#: The JSON body of an error answer: no data, one or more errors.
ErrorBody = dict[str, Any]


def error_body(message: str) -> ErrorBody:
    """A complete answer body for a request that failed before any GraphQL ran."""
    return {"data": None, "errors": [{"message": message}]}


def tail(text: str, limit: int = OUTPUT_TAIL_BYTES) -> str:
    """The last `limit` bytes of `text` (UTF-8), cut on a character boundary."""
    data = text.encode("utf-8", errors="replace")
    if len(data) <= limit:
        return text
    return data[-limit:].decode("utf-8", errors="ignore")


def leaves(error: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, or `error` itself."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaves(inner)]
    return [error]


def find_exec_error(error: BaseException | None) -> ExecError | None:
    """The `ExecError` behind `error`, through wrappers (`SolveError.cause`, `__cause__`,
    task-group exception groups)."""
    seen: set[int] = set()
    pending = [error] if error is not None else []
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ExecError):
            return current
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        elif isinstance(current, GraphQLError):
            pending.extend([current.original_error] if current.original_error else [])
        else:
            pending.extend(e for e in (getattr(current, "cause", None), current.__cause__) if e)
    return None


def exec_error_extensions(error: ExecError) -> dict[str, Any]:
    return {
        "_type": "EXEC_ERROR",
        "cmd": list(error.cmd),
        "exitCode": error.exit_code,
        "stdout": tail(error.stdout),
        "stderr": tail(error.stderr),
    }


def format_error(error: GraphQLError) -> dict[str, Any]:
    """One entry of `errors`: message, locations, path, and extensions when there are some.

    A failed exec keeps its one-line message (with `exit code: N`); its output goes into the
    extensions only, as Dagger does.
    """
    formatted: dict[str, Any] = dict(error.formatted)
    original = error.original_error
    exec_error = find_exec_error(original)
    if exec_error is not None:
        formatted["message"] = exec_error.message
        formatted["extensions"] = {
            **formatted.get("extensions", {}),
            **exec_error_extensions(exec_error),
        }
    elif isinstance(original, BaseExceptionGroup):
        # A task group's failure: say what failed inside it, not "unhandled errors in a TaskGroup".
        messages = dict.fromkeys(str(leaf) or type(leaf).__name__ for leaf in leaves(original))
        formatted["message"] = "; ".join(messages)
    elif not formatted.get("message"):
        formatted["message"] = type(original).__name__ if original else "unknown error"
    return formatted
