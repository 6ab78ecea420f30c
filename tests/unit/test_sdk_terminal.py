"""The SDK holds a terminal only for queries that call `terminal`, only on a tty, and leaves
it to `dirk run -i` when that holds it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from dirk.errors import TerminalError
from dirk.sdk.executor import Executor
from dirk.sdk.query import Call
from dirk.sdk.terminal import HELD_ENV, TerminalAttacher
from dirk.wire.client import EngineAddress

pytestmark = pytest.mark.anyio


class Answers:
    closed = False

    def __init__(self) -> None:
        self.queries: list[str] = []

    async def execute(self, query: str) -> dict[str, Any]:
        self.queries.append(query)
        if "terminal" in query:
            return {"container": {"terminal": {"id": "x"}}}
        return {"container": {"id": "y"}}

    async def aclose(self) -> None:
        pass


def _executor() -> tuple[Executor, Answers]:
    answers = Answers()
    attacher = TerminalAttacher(EngineAddress("http://127.0.0.1:1"), "token")
    return Executor(answers, attacher), answers


CHAIN: Sequence[Call] = (Call("container"), Call("terminal"), Call("id"))


async def test_without_a_tty_terminal_fails_before_the_query(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(HELD_ENV, raising=False)
    monkeypatch.setattr("os.isatty", lambda fd: False)
    executor, answers = _executor()
    with pytest.raises(TerminalError, match=r"stdin is not a tty.*dirk run -i"):
        await executor.execute(CHAIN)
    assert answers.queries == []


async def test_under_dirk_run_i_the_query_goes_as_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HELD_ENV, "1")
    monkeypatch.setattr("os.isatty", lambda fd: False)
    executor, answers = _executor()
    assert await executor.execute(CHAIN) == "x"
    assert len(answers.queries) == 1


async def test_other_queries_need_no_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(HELD_ENV, raising=False)
    monkeypatch.setattr("os.isatty", lambda fd: False)
    executor, answers = _executor()
    await executor.execute((Call("container"), Call("id")))
    assert len(answers.queries) == 1
