"""Typed errors across the wire: every `dirk.errors` class has its own code, and an error the
engine raises comes back in the SDK as the same class (engine -> JSON -> SDK)."""

from __future__ import annotations

import json
import re
from typing import Any

import anyio
import httpx
import pytest
from graphql import GraphQLField, GraphQLObjectType, GraphQLSchema, GraphQLString, graphql_sync

from dirk import errors
from dirk.errors import (
    CommandNotFoundError,
    DirkError,
    ExecError,
    ImageNotFoundError,
    QueryError,
    SolveError,
    StateError,
)
from dirk.wire.client import EngineAddress, GraphQLClient
from dirk.wire.codes import error_classes
from dirk.wire.errors import format_error

CLASSES = sorted(
    {v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, DirkError)},
    key=lambda cls: cls.__name__,
)


def engine_error(cls: type[DirkError]) -> DirkError:
    """An instance of `cls` as the engine raises it."""
    if issubclass(cls, CommandNotFoundError):
        return cls.for_command(["no-such-tool", "--flag"], "/usr/bin:/bin")
    if issubclass(cls, ExecError):
        return cls(["sh", "-c", "exit 3"], 3, "out\n", "err\n")
    if issubclass(cls, SolveError):
        return cls("exec make", KeyError("missing"))
    return cls(f"a {cls.__name__} happened")


def wire_entry(error: BaseException) -> dict[str, Any]:
    """The JSON entry of `errors` the engine answers when a resolver raises `error`."""

    def fail(*_: Any) -> str:
        raise error

    query = GraphQLObjectType("Query", {"step": GraphQLField(GraphQLString, resolve=fail)})
    result = graphql_sync(GraphQLSchema(query), "{ step }")
    assert result.errors
    entry: dict[str, Any] = json.loads(json.dumps(format_error(result.errors[0])))
    return entry


def sdk_error(entries: list[dict[str, Any]]) -> BaseException:
    """What dirk's SDK raises for an answer with these `errors`."""

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": None, "errors": entries})

    async def main() -> BaseException:
        client = GraphQLClient(
            EngineAddress("http://127.0.0.1:1"), "tok", transport=httpx.MockTransport(answer)
        )
        try:
            await client.execute("{ step }")
        except BaseException as exc:
            return exc
        finally:
            await client.aclose()
        raise AssertionError("no error raised")

    return anyio.run(main)


def test_every_class_has_its_own_stable_code() -> None:
    codes: dict[str, str] = {}
    for cls in CLASSES:
        assert "code" in vars(cls), f"{cls.__name__} needs its own `code` (it inherits one)"
        assert re.fullmatch(r"[A-Z][A-Z_]+", cls.code), cls.code
        assert cls.code not in codes, f"{cls.__name__} and {codes[cls.code]} share {cls.code}"
        codes[cls.code] = cls.__name__
    assert set(error_classes()) == set(codes)
    assert errors.DaggerError is DirkError  # an alias, not a class of its own


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_every_class_round_trips_engine_wire_sdk(cls: type[DirkError]) -> None:
    original = engine_error(cls)
    entry = wire_entry(original)
    assert entry["path"] == ["step"]
    raised = sdk_error([entry])
    assert isinstance(raised, cls) and isinstance(raised, QueryError)
    if cls is DirkError:  # the base of everything: an answered one is a QueryError
        assert type(raised) is QueryError
    else:
        assert type(raised).__name__ == cls.__name__ and type(raised).code == cls.code
    assert raised.path == ["step"]
    expected = original.message if isinstance(original, QueryError) else str(original)
    assert raised.message == expected
    assert raised.error.extensions == entry["extensions"]  # Dagger's `error` attribute
    if isinstance(original, ExecError):
        assert isinstance(raised, ExecError)
        assert (raised.command, raised.exit_code) == (original.command, original.exit_code)
        assert (raised.stdout, raised.stderr) == (original.stdout, original.stderr)
    if isinstance(original, SolveError):
        assert isinstance(raised, SolveError) and raised.step == "exec make"


def test_exec_errors_keep_daggers_shape_exactly() -> None:
    entry = wire_entry(ExecError(["sh", "-c", "exit 3"], 3, "out\n", "err\n"))
    assert entry["extensions"] == {
        "_type": "EXEC_ERROR",
        "cmd": ["sh", "-c", "exit 3"],
        "exitCode": 3,
        "stdout": "out\n",
        "stderr": "err\n",
    }
    assert entry["message"] == 'process "sh -c exit 3" did not complete successfully: exit code: 3'


def test_a_missing_command_is_an_exec_error_with_exit_code_1_in_daggers_words() -> None:
    error = CommandNotFoundError.for_command(["no-such-tool", "--flag"], "/usr/bin:/bin")
    entry = wire_entry(error)
    # What Dagger's SDKs read (they dispatch on `_type`), plus the exact class for dirk's.
    assert entry["extensions"] == {
        "_type": "EXEC_ERROR",
        "cmd": ["no-such-tool", "--flag"],
        "exitCode": 1,
        "stdout": "",
        "stderr": 'exec: "no-such-tool": executable file not found in $PATH\n',
        "subtype": "COMMAND_NOT_FOUND",
    }
    message = entry["message"]
    assert message.startswith('process "no-such-tool --flag" did not complete successfully')
    assert "exit code: 1" in message
    assert 'exec: "no-such-tool": executable file not found in $PATH (PATH=/usr/bin:/bin)' in (
        message
    )
    assert "install it in an earlier step" in message
    by_path = CommandNotFoundError.for_command(["/opt/tool"], "/usr/bin")
    assert by_path.stderr == "fork/exec /opt/tool: no such file or directory\n"
    assert "no executable file /opt/tool" in by_path.message


def test_an_error_behind_a_task_group_or_a_cause_keeps_its_code() -> None:
    inner = ImageNotFoundError("no tag 'nope' in repository busybox")
    group = ExceptionGroup("task group", [inner])
    entry = wire_entry(group)
    assert entry["extensions"] == {"_type": "IMAGE_NOT_FOUND"}
    assert entry["message"] == "no tag 'nope' in repository busybox"
    assert type(sdk_error([entry])) is ImageNotFoundError


def test_errors_that_are_not_dirks_carry_no_code() -> None:
    entry = wire_entry(ZeroDivisionError("a bug"))
    assert "extensions" not in entry
    assert type(sdk_error([entry])) is QueryError


def test_a_code_this_sdk_does_not_know_is_a_query_error() -> None:
    newer = {"message": "new failure", "path": ["x"], "extensions": {"_type": "FROM_THE_FUTURE"}}
    assert type(sdk_error([newer])) is QueryError
    exec_newer = {
        "message": "exit code: 2",
        "extensions": {
            **{"_type": "EXEC_ERROR", "cmd": ["x"], "exitCode": 2, "stdout": "", "stderr": ""},
            "subtype": "FROM_THE_FUTURE",
        },
    }
    raised = sdk_error([exec_newer])
    assert type(raised) is ExecError and raised.exit_code == 2


def test_an_engine_error_outside_query_error_is_caught_as_both() -> None:
    raised = sdk_error([wire_entry(StateError("the disk is full"))])
    assert isinstance(raised, StateError) and isinstance(raised, QueryError)
    assert "dirk.errors.StateError" in f"{type(raised).__module__}.{type(raised).__qualname__}"
    assert type(sdk_error([wire_entry(StateError("again"))])) is type(raised)  # one class


def test_several_errors_keep_the_first_ones_class_and_all_entries() -> None:
    first = wire_entry(ImageNotFoundError("no such image"))
    second = {"message": "also this", "path": ["other"]}
    raised = sdk_error([first, second])
    assert type(raised) is ImageNotFoundError
    assert isinstance(raised, QueryError)
    assert raised.message == "no such image (and 1 more: also this)"
    assert [e.message for e in raised.errors] == ["no such image", "also this"]
    assert raised.errors[1].path == ["other"]
