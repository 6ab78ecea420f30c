"""What a program's user reads when a step fails or is interrupted (`dirk.sdk.failures`).

The SDK talks to a mock transport: a query whose command says `exit 3` fails at once as the
engine answers a failed exec; any other query hangs until it is cancelled.
"""

from __future__ import annotations

import inspect
import json
import sys
from typing import Any

import anyio
import httpx
import pytest

import dirk
from dirk.errors import ExecError
from dirk.sdk import connection as connection_module
from dirk.sdk import failures
from dirk.sdk.callsite import short_path
from dirk.sdk.provision import SessionInfo
from dirk.sdk.steps import chain_text, command_text
from dirk.wire.client import EngineAddress

pytestmark = pytest.mark.anyio

IMAGE = "127.0.0.1:5000/python:3.11"


class HangingEngine:
    """Fails `exit 3` execs at once; holds every other query until the caller gives up."""

    def __init__(self) -> None:
        self.cancelled = 0

    async def handle(self, request: httpx.Request) -> httpx.Response:
        query = json.loads(request.content)["query"]
        if query == "{ directory { id } }":  # an object argument's ID
            return httpx.Response(200, json={"data": {"directory": {"id": "d1"}}})
        if "exit 3" in query:
            error = {
                "message": 'process "sh -c echo testing; echo boom >&2; exit 3" did not '
                "complete successfully: exit code: 3",
                "path": ["container"],
                "extensions": {
                    "_type": "EXEC_ERROR",
                    "cmd": ["sh", "-c", "echo testing; echo boom >&2; exit 3"],
                    "exitCode": 3,
                    "stdout": "testing\n",
                    "stderr": "boom\n",
                },
            }
            return httpx.Response(200, json={"data": None, "errors": [error]})
        try:
            await anyio.sleep(60)
        except anyio.get_cancelled_exc_class():
            self.cancelled += 1
            raise
        return httpx.Response(200, json={"data": None})


@pytest.fixture
def hanging(monkeypatch: pytest.MonkeyPatch) -> HangingEngine:
    engine = HangingEngine()

    async def open_session(workdir: Any, labels: Any, **_: Any) -> SessionInfo:
        return SessionInfo("t", 1, EngineAddress("http://fake"), control=None)

    async def close_session(info: SessionInfo, attachment: object = None) -> None:
        pass

    monkeypatch.setattr(connection_module, "open_session", open_session)
    monkeypatch.setattr(connection_module, "close_session", close_session)
    monkeypatch.setattr(
        connection_module.Connection, "_http_transport", httpx.MockTransport(engine.handle)
    )
    return engine


def _line_of(marker: str) -> int:
    """The line of this file that holds `marker` (the user's line a report must name)."""
    lines = inspect.getsource(sys.modules[__name__]).splitlines()
    return next(n for n, line in enumerate(lines, 1) if marker in line and "_line_of" not in line)


async def _step(client: dirk.Client[dirk.Async], name: str, script: str) -> str:
    ctr = (
        client.container()
        .from_(IMAGE)
        .with_directory("/src", client.directory())
        .with_env_variable("STEP", name)
        .with_exec(["sh", "-c", script])  # the step's exec
    )
    return await ctr.stdout()  # the step's leaf


async def test_one_of_three_concurrent_steps_fails_report_names_it_and_the_cancelled(
    hanging: HangingEngine,
) -> None:
    with pytest.raises(BaseExceptionGroup) as caught:
        async with dirk.Connection() as client, anyio.create_task_group() as group:
            group.start_soon(_step, client, "lint", "sleep 30; echo lint")
            group.start_soon(_step, client, "test", "echo testing; echo boom >&2; exit 3")
            group.start_soon(_step, client, "build", "sleep 30; echo build")
            await anyio.sleep(0.2)  # the two slow steps are under way when the third fails
    assert hanging.cancelled == 2
    error = caught.value.exceptions[0]
    assert isinstance(error, ExecError) and error.exit_code == 3  # types and codes are kept
    text = failures.report(caught.value)
    assert text is not None
    here = short_path(__file__)
    lines = text.splitlines()
    assert (
        lines[0]
        == '✗ step failed: `sh -c "echo testing; echo boom >&2; exit 3"` exited with code 3'
    )
    assert (
        f"  pipeline: container → from {IMAGE} → with_directory /src → with_env_variable STEP "
        '→ with_exec sh -c "echo testing; echo boom >&2; exit 3"' in lines
    )
    assert (
        f"  at: {here}:{_line_of('# the step' + chr(39) + 's exec')} in _step (with_exec), "
        f"awaited at {here}:{_line_of('# the step' + chr(39) + 's leaf')} in _step"
    ) in lines
    assert "  stdout (last lines):" in lines and "    testing" in lines
    assert "  stderr (last lines):" in lines and "    boom" in lines
    assert "cancelled because of the failure (2):" in lines
    cancelled = [line for line in lines if line.startswith("  ■ ")]
    assert len(cancelled) == 2
    assert any('sleep 30; echo lint"' in line for line in cancelled)
    assert any('sleep 30; echo build"' in line for line in cancelled)
    assert "Traceback" not in text and "ExceptionGroup" not in text
    # The error itself carries the pipeline too, for programs that catch it.
    assert error.pipeline.endswith('with_exec sh -c "echo testing; echo boom >&2; exit 3"')
    assert error.location.startswith(f"{here}:")
    assert any(note.startswith("pipeline: container") for note in error.__notes__)


async def test_a_step_built_on_a_synced_object_reports_the_whole_pipeline(
    hanging: HangingEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def sync_answer(request: httpx.Request) -> httpx.Response:
        query = json.loads(request.content)["query"]
        if "sync" in query:
            return httpx.Response(200, json={"data": {"container": {"from": {"sync": "c1"}}}})
        return await hanging.handle(request)

    monkeypatch.setattr(
        connection_module.Connection, "_http_transport", httpx.MockTransport(sync_answer)
    )
    async with dirk.Connection() as client:
        base = await client.container().from_(IMAGE).sync()
        with pytest.raises(ExecError) as caught:
            await base.with_exec(["sh", "-c", "echo testing; echo boom >&2; exit 3"]).stdout()
    assert caught.value.pipeline == (
        f'container → from {IMAGE} → with_exec sh -c "echo testing; echo boom >&2; exit 3"'
    )


async def test_the_failed_exec_is_found_in_an_object_argument(hanging: HangingEngine) -> None:
    async with dirk.Connection() as client:
        built = (
            client.container()
            .from_(IMAGE)
            .with_exec(["sh", "-c", "echo testing; echo boom >&2; exit 3"])
            .directory("/out")
        )
        app = client.container().from_("busybox").with_directory("/app", built)
        with pytest.raises(ExecError) as caught:
            await app.stdout()
    # The chain that ran the failing command, not the one that awaited it.
    assert caught.value.pipeline == (
        f'container → from {IMAGE} → with_exec sh -c "echo testing; echo boom >&2; exit 3"'
    )


def test_interrupted_report_lists_the_steps_that_were_stopped(hanging: HangingEngine) -> None:
    async def main() -> None:
        async with dirk.Connection() as client:
            await _step(client, "slow", "sleep 60")

    async def interrupt_soon() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(main)
            await anyio.sleep(0.2)
            group.cancel_scope.cancel()  # what asyncio.run does to the program on Ctrl-C

    anyio.run(interrupt_soon)
    text = failures.report(KeyboardInterrupt())
    assert text is not None
    assert text.startswith("✗ interrupted (Ctrl-C): the session was cancelled")
    assert "stopped while running (1):" in text
    assert 'with_exec sh -c "sleep 60" → stdout (at ' in text


def test_the_excepthook_prints_the_report_and_the_traceback_only_when_asked(
    hanging: HangingEngine, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        async with dirk.Connection() as client, anyio.create_task_group() as group:
            group.start_soon(_step, client, "test", "echo testing; echo boom >&2; exit 3")

    with pytest.raises(BaseExceptionGroup) as caught:
        anyio.run(main)
    assert sys.excepthook is not sys.__excepthook__  # opening the connection installed it
    group = caught.value
    sys.excepthook(type(group), group, group.__traceback__)
    err = capsys.readouterr().err
    assert err.startswith("✗ step failed: `sh -c")
    assert "ExceptionGroup" not in err and "Traceback" not in err
    assert "DIRK_TRACEBACK=1" in err
    monkeypatch.setenv("DIRK_TRACEBACK", "1")
    sys.excepthook(type(group), group, group.__traceback__)
    err = capsys.readouterr().err
    assert "ExceptionGroup" in err and "Traceback" in err and "✗ step failed" in err
    # Anything else goes to the previous hook unchanged.
    other = ValueError("not dirk's")
    sys.excepthook(ValueError, other, None)
    err = capsys.readouterr().err
    assert "ValueError: not dirk's" in err and "✗" not in err


def test_report_is_none_without_a_dirk_error() -> None:
    assert failures.report(ExceptionGroup("g", [ValueError("x")])) is None


def test_chain_text_hides_values_and_masks_credentials() -> None:
    from dirk.sdk.query import Call

    chain = (
        Call("container"),
        Call("withEnvVariable", (("name", "TOKEN"), ("value", "s3cret"))),
        Call("git", (("url", "https://user:pw@example.com/r.git"),)),
        Call("withExec", (("args", ("echo", "a b")),)),
        Call("sync"),
        Call("stdout"),
    )
    text = chain_text(chain)
    assert "s3cret" not in text and "pw@" not in text
    assert text == (
        "container → with_env_variable TOKEN → git https://***@example.com/r.git "
        '→ with_exec echo "a b" → stdout'
    )
    assert command_text(["sh", "-c", "exit 3"]) == 'sh -c "exit 3"'
