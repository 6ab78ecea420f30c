"""The `dirk` command as a user types it (subprocesses), against an in-process daemon serving a
stand-in schema: help and completion, `engine status|stop|logs`, `query`, `version` (also with an
engine of another version), and `run`'s exit codes.

`dirk engine start`/`stop` of a real engine are in tests/integration/test_cli_engine.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dirk import __version__

from .wire_standin import VERSION, Daemon

pytestmark = pytest.mark.anyio

DIRK = [sys.executable, "-m", "dirk"]


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    d = Daemon(tmp_path / "state")
    await d.start()
    yield d
    await d.aclose()


def _env(root: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGGER_", "DIRK_"))}
    env["DIRK_STATE_DIR"] = str(root)
    env.update(extra)
    return env


async def _dirk(
    *args: str, env: dict[str, str], stdin: bytes | None = None, cwd: Path | None = None
) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *DIRK,
        *args,
        env=env,
        cwd=cwd,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


# --- help and completion ------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["engine"],
        ["engine", "start"],
        ["engine", "stop"],
        ["engine", "status"],
        ["engine", "logs"],
        ["session"],
        ["run"],
        ["query"],
        ["version"],
    ],
)
async def test_every_command_has_help(args: list[str], tmp_path: Path) -> None:
    code, out, _ = await _dirk(*args, "--help", env=_env(tmp_path))
    assert code == 0 and out.startswith("Usage: dirk"), out


async def test_help_lists_the_commands_and_how_to_complete_them(tmp_path: Path) -> None:
    code, out, _ = await _dirk("--help", env=_env(tmp_path))
    assert code == 0
    for name in ("engine", "session", "run", "query", "version"):
        assert f"\n  {name} " in out
    assert "_DIRK_COMPLETE=bash_source dirk" in out


async def test_shell_completion_completes_subcommands(tmp_path: Path) -> None:
    env = _env(
        tmp_path, _DIRK_COMPLETE="bash_complete", COMP_WORDS="dirk engine st", COMP_CWORD="2"
    )
    code, out, _ = await _dirk(env=env)
    assert code == 0
    assert out.split() == ["plain,start", "plain,status", "plain,stop"]
    code, out, _ = await _dirk(env=_env(tmp_path, _DIRK_COMPLETE="bash_source"))
    assert code == 0 and "complete -o nosort -F _dirk_completion dirk" in out


async def test_an_unknown_command_says_so(tmp_path: Path) -> None:
    code, _, err = await _dirk("frobnicate", env=_env(tmp_path))
    assert code == 2 and "No such command 'frobnicate'" in err


# --- dirk engine status | stop | logs -----------------------------------------------------


async def test_engine_status_of_a_running_engine(daemon: Daemon) -> None:
    code, out, err = await _dirk("engine", "status", env=_env(daemon.root))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "engine: running"
    assert f"pid: {os.getpid()}" in lines  # the daemon runs inside this test process
    assert f"version: {__version__}" in lines
    assert f"state dir: {daemon.root}" in lines
    assert "sessions: 0 (0 running a query)" in lines
    assert any(line.startswith("uptime: ") and line.endswith("s") for line in lines)
    code, out, _ = await _dirk("engine", "status", "--json", env=_env(daemon.root))
    status = json.loads(out)
    assert status["running"] is True and status["pid"] == os.getpid()
    assert status["sessions"] == [] and status["uptime_s"] >= 0


async def test_engine_status_counts_the_open_sessions(daemon: Daemon, tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        *DIRK, "session", "--label", "who:test", env=_env(daemon.root), cwd=tmp_path,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdin is not None
    await asyncio.wait_for(proc.stdout.readline(), 30)
    try:
        code, out, _ = await _dirk("engine", "status", env=_env(daemon.root))
        assert code == 0
        assert "sessions: 1 (0 running a query)" in out
        assert f"  {tmp_path}  running 0  attached 1  who=test" in out
    finally:
        proc.stdin.close()
        await asyncio.wait_for(proc.wait(), 30)


async def test_engine_status_without_an_engine_exits_3(tmp_path: Path) -> None:
    code, out, _ = await _dirk("engine", "status", env=_env(tmp_path / "none"))
    assert code == 3
    assert out.startswith(f"engine: not running (state dir {tmp_path / 'none'})")


async def test_engine_stop_without_an_engine_says_so(tmp_path: Path) -> None:
    code, out, _ = await _dirk("engine", "stop", env=_env(tmp_path / "none"))
    assert code == 0 and out.strip() == f"no engine is running on {tmp_path / 'none'}"


async def test_engine_logs_prints_the_end_and_follows(tmp_path: Path) -> None:
    root = tmp_path / "state"
    root.mkdir()
    log = root / "engine.log"
    log.write_text("".join(f"line {n}\n" for n in range(100)))
    code, out, _ = await _dirk("engine", "logs", "-n", "3", env=_env(root))
    assert code == 0 and out == "line 97\nline 98\nline 99\n"
    code, out, _ = await _dirk("engine", "logs", "--lines", "0", env=_env(root))
    assert out.count("\n") == 100
    proc = await asyncio.create_subprocess_exec(
        *DIRK, "engine", "logs", "-f", "-n", "1", env=_env(root), stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    try:
        assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"line 99\n"
        with log.open("a") as f:
            f.write("appended later\n")
        assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"appended later\n"
        log.rename(root / "engine.log.1")  # a new engine rotates the log
        log.write_text("new engine\n")
        assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"new engine\n"
    finally:
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.wait(), 30)


async def test_engine_logs_without_a_log_says_where_it_would_be(tmp_path: Path) -> None:
    code, _, err = await _dirk("engine", "logs", env=_env(tmp_path))
    assert code == 1
    assert f"there is no {tmp_path / 'engine.log'}" in err and "foreground" in err


# --- dirk query ---------------------------------------------------------------------------


async def test_query_prints_the_data_as_json(daemon: Daemon) -> None:
    code, out, err = await _dirk("query", "{ version }", env=_env(daemon.root))
    assert code == 0, err
    assert json.loads(out) == {"version": VERSION}


async def test_query_reads_stdin_and_takes_variables(daemon: Daemon) -> None:
    document = b"query($t: String!, $n: Int) { echo(text: $t, times: $n) }"
    code, out, err = await _dirk(
        "query", "--vars", '{"n": 3}', "--var", "t=ab", env=_env(daemon.root), stdin=document
    )
    assert code == 0, err
    assert json.loads(out) == {"echo": "ababab"}
    code, out, _ = await _dirk("query", "-", env=_env(daemon.root), stdin=b"{ workdir }")
    assert code == 0 and "workdir" in json.loads(out)


async def test_query_uses_the_session_of_dirk_run(daemon: Daemon, tmp_path: Path) -> None:
    code, out, err = await _dirk(
        "run", "--workdir", str(tmp_path), "--", *DIRK, "query", "{ workdir }",
        env=_env(daemon.root),
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out) == {"workdir": str(tmp_path)}


async def test_query_with_a_graphql_error_exits_1_with_its_message(daemon: Daemon) -> None:
    code, out, err = await _dirk(
        "query", "{ failExec(code: 3, stderrBytes: 4) }", env=_env(daemon.root)
    )
    assert code == 1 and out == ""
    assert 'Error: process "sh -c false" did not complete successfully: exit code: 3' in err
    assert "stderr (last lines):\n  eeee" in err
    code, _, err = await _dirk("query", "{ noSuchField }", env=_env(daemon.root))
    assert code == 1 and "Cannot query field 'noSuchField'" in err


async def test_query_bad_input(daemon: Daemon) -> None:
    code, _, err = await _dirk("query", "--vars", "[1]", "{ version }", env=_env(daemon.root))
    assert code == 2 and "must be a JSON object" in err
    code, _, err = await _dirk("query", "--var", "novalue", "{ version }", env=_env(daemon.root))
    assert code == 2 and "'novalue' is not NAME=VALUE" in err
    code, _, err = await _dirk("query", env=_env(daemon.root), stdin=b"  \n")
    assert code == 2 and "the GraphQL document is empty" in err


# --- dirk version -------------------------------------------------------------------------


async def test_version_prints_both_versions(daemon: Daemon) -> None:
    code, out, err = await _dirk("version", env=_env(daemon.root))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(f"dirk {__version__} (client: ")
    assert lines[1] == f"engine {__version__} (pid {os.getpid()}, {daemon.root})"


async def test_version_without_an_engine_does_not_start_one(tmp_path: Path) -> None:
    code, out, _ = await _dirk("version", env=_env(tmp_path / "none"))
    assert code == 0
    assert "engine: not running" in out
    assert not (tmp_path / "none").exists()


async def test_version_names_a_mismatch_and_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIRK_TEST_ENGINE_VERSION", "0.0.1-old")
    daemon = Daemon(tmp_path / "state")
    await daemon.start()
    try:
        code, out, err = await _dirk("version", env=_env(daemon.root))
        assert code == 1
        assert "engine 0.0.1-old" in out
        assert f"dirk {__version__} is talking to a dirk engine 0.0.1-old" in err
        assert "`dirk engine stop`" in err
        code, out, _ = await _dirk("version", "--json", env=_env(daemon.root))
        assert json.loads(out)["match"] is False
        # Inside `dirk run`, the session's engine is asked through GraphQL (Query.version).
        code, out, err = await _dirk("run", "--", *DIRK, "version", env=_env(daemon.root))
        assert code == 1 and f"engine {VERSION}" in out
        assert err.count("is talking to a dirk engine 0.0.1-old") == 1  # dirk run warned once
    finally:
        await daemon.aclose()


async def test_version_with_a_bad_engine_address(tmp_path: Path) -> None:
    code, _, err = await _dirk("version", env=_env(tmp_path, DIRK_ENGINE="ftp://x"))
    assert code == 1 and "DIRK_ENGINE='ftp://x' is not an engine address" in err


# --- dirk run -----------------------------------------------------------------------------


async def test_run_a_missing_command_exits_127(daemon: Daemon) -> None:
    code, _, err = await _dirk("run", "--", "no-such-command-here", env=_env(daemon.root))
    assert code == 127
    assert "dirk run: command not found: no-such-command-here" in err


async def test_run_a_file_that_cannot_be_executed_exits_126(daemon: Daemon, tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("echo hi\n")
    code, _, err = await _dirk("run", "--", str(script), env=_env(daemon.root))
    assert code == 126 and f"cannot run {script}: Permission denied" in err


async def test_run_exit_code_of_a_killed_command_is_128_plus_the_signal(daemon: Daemon) -> None:
    code, _, err = await _dirk("run", "--", "sh", "-c", "kill -KILL $$", env=_env(daemon.root))
    assert code == 128 + signal.SIGKILL
    assert "dirk run: `sh -c 'kill -KILL $$'` was killed by SIGKILL" in err


async def test_run_without_a_command_is_a_usage_error(daemon: Daemon) -> None:
    code, _, err = await _dirk("run", env=_env(daemon.root))
    assert code == 2 and "Missing argument 'COMMAND...'" in err


async def test_run_reports_an_interruption_and_exits_130(daemon: Daemon) -> None:
    proc = await asyncio.create_subprocess_exec(
        *DIRK, "run", "--", sys.executable, "-c",
        "import sys, time; print('ready', flush=True); time.sleep(60)",
        env=_env(daemon.root), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"ready\n"
    proc.send_signal(signal.SIGINT)  # forwarded: the child's KeyboardInterrupt ends it
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 130, err
    assert "dirk run: interrupted by SIGINT: stopped `" in err.decode()
    assert "and ended its session" in err.decode()


async def test_the_sdk_warns_once_about_an_engine_of_another_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import warnings

    import dirk
    from dirk.errors import EngineVersionWarning

    monkeypatch.setenv("DIRK_TEST_ENGINE_VERSION", "0.0.2-sdk-test")
    daemon = Daemon(tmp_path / "state")
    info = await daemon.start()
    config = dirk.Config(engine=f"unix://{info['socket']}", workdir=tmp_path)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(2):  # a second connection to the same engine does not warn again
                async with dirk.Connection(config):
                    pass
        mismatches = [w for w in caught if issubclass(w.category, EngineVersionWarning)]
        assert len(mismatches) == 1, [str(w.message) for w in caught]
        assert f"dirk {__version__} is talking to a dirk engine 0.0.2-sdk-test" in str(
            mismatches[0].message
        )
        assert mismatches[0].filename == __file__  # points at the program, not at dirk
    finally:
        await daemon.aclose()
