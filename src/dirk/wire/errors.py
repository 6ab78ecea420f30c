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


def find_exec_error(error: BaseException | None) -> ExecError | None:
    """The `ExecError` behind `error`, following wrappers (`SolveError.cause`, `__cause__`)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, ExecError):
            return error
        if isinstance(error, GraphQLError):
            error = error.original_error
            continue
        error = getattr(error, "cause", None) or error.__cause__
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
    exec_error = find_exec_error(error.original_error)
    if exec_error is not None:
        formatted["message"] = exec_error.message
        formatted["extensions"] = {
            **formatted.get("extensions", {}),
            **exec_error_extensions(exec_error),
        }
    elif not formatted.get("message"):
        original = error.original_error
        formatted["message"] = type(original).__name__ if original else "unknown error"
    return formatted
