"""The `dirk` command and failure reports against a real engine, driven as a user would.

`dirk engine start|status|logs|stop` manage a detached engine of their own state dir; programs
run under `dirk run` against a foreground engine: a task group where one of three concurrent
steps fails, and Ctrl-C during a long step. Nothing may be left running afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.sdk_engine import (
    RunningEngine,
    clean_env,
    foreground_engine,
    new_state_dir,
    pid_running,
    require_root,
    stop_leftover,
)

pytestmark = pytest.mark.integration

DIRK = [sys.executable, "-m", "dirk"]


@pytest.fixture(scope="module")
def engine() -> Iterator[RunningEngine]:
    yield from foreground_engine()


def _dirk(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DIRK, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _command_running(text: str) -> bool:
    """Whether a process of this host has `text` in its command line."""
    needle = text.encode()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                    if needle in f.read().replace(b"\0", b" "):
                        return True
            except OSError:
                continue
    return False


def _wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {seconds:g} s", False)
        time.sleep(0.05)


def _sessions(engine: RunningEngine) -> list[dict[str, object]]:
    status = json.loads(_dirk("engine", "status", "--json", env=clean_env(engine.state_dir)).stdout)
    return list(status["sessions"])


# --- dirk engine start | status | logs | stop ---------------------------------------------


def test_engine_start_status_logs_stop() -> None:
    require_root()
    state = new_state_dir()
    env = clean_env(state)
    try:
        started = _dirk("engine", "start", env=env)
        assert started.returncode == 0, started.stderr
        info = json.loads((state / "engine.json").read_text())
        assert started.stdout.strip() == (
            f"engine started: dirk {info['version']}, pid {info['pid']}, state dir {state}"
        )
        again = _dirk("engine", "start", env=env)
        assert again.stdout.startswith("engine already running: ")
        status = _dirk("engine", "status", env=env)
        assert status.returncode == 0
        assert f"pid: {info['pid']}" in status.stdout and f"state dir: {state}" in status.stdout
        logs = _dirk("engine", "logs", "-n", "5", env=env)
        assert logs.returncode == 0 and f"(pid {info['pid']}) serving on" in logs.stdout
        stopped = _dirk("engine", "stop", env=env)
        assert stopped.returncode == 0, stopped.stderr
        assert stopped.stdout.strip() == f"engine stopped (pid {info['pid']}, state dir {state})"
        assert not pid_running(int(info["pid"]))
        assert _dirk("engine", "status", env=env).returncode == 3
        assert "engine stopped" in _dirk("engine", "logs", "-n", "3", env=env).stdout
    finally:
        stop_leftover(state)


def test_engine_start_as_another_user_is_refused_clearly() -> None:
    require_root()
    state = new_state_dir()
    try:
        result = subprocess.run(
            [
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                *DIRK,
                "engine",
                "start",
            ],
            env=clean_env(state),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 1
        assert "dirk's engine needs root" in result.stderr
    finally:
        stop_leftover(state)


# --- a failed step among concurrent ones ---------------------------------------------------

#: Three concurrent steps; "test" fails quickly while the other two are still running.
TASK_GROUP_PROGRAM = """
import sys

import anyio

import dirk
from dirk import dag

IMAGE, TOKEN = sys.argv[1], sys.argv[2]


async def step(name: str, script: str) -> str:
    ctr = dag.container().from_(IMAGE).with_env_variable("STEP", name)
    return await ctr.with_exec(["sh", "-c", script]).stdout()  # STEP LINE


async def main() -> None:
    async with dirk.connection():
        async with anyio.create_task_group() as group:
            group.start_soon(step, "lint", f"sleep 30; echo lint {TOKEN}")
            group.start_soon(step, "test", f"sleep 1; echo ran {TOKEN}; echo FAILED x >&2; exit 3")
            group.start_soon(step, "build", f"sleep 30; echo build {TOKEN}")


anyio.run(main)
"""


def _program(tmp_path: Path, text: str) -> tuple[Path, int]:
    path = tmp_path / "ci.py"
    path.write_text(textwrap.dedent(text))
    line = next(n for n, each in enumerate(text.splitlines(), 1) if "# STEP LINE" in each)
    return path, line


def test_one_of_three_concurrent_steps_fails(
    engine: RunningEngine, busybox_ref: str, tmp_path: Path
) -> None:
    program, line = _program(tmp_path, TASK_GROUP_PROGRAM)
    token = uuid.uuid4().hex[:12]
    env = clean_env(DIRK_ENGINE=engine.socket_url)
    result = subprocess.run(
        [*DIRK, "run", "--", sys.executable, str(program), busybox_ref, token],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    err = result.stderr
    assert result.returncode == 1, err
    assert "Traceback" not in err and "ExceptionGroup" not in err, err
    assert (
        f'✗ step failed: `sh -c "sleep 1; echo ran {token}; echo FAILED x >&2; exit 3"` '
        "exited with code 3"
    ) in err
    assert f"  pipeline: container → from {busybox_ref} → with_env_variable STEP → with_exec" in err
    assert f"  at: ci.py:{line} in step (with_exec)" in err
    assert f"  stdout (last lines):\n    ran {token}\n" in err
    assert "  stderr (last lines):\n    FAILED x\n" in err
    assert "cancelled because of the failure (2):" in err
    assert f'sleep 30; echo lint {token}" → stdout (at ci.py:{line} in step)' in err
    assert f'sleep 30; echo build {token}" → stdout (at ci.py:{line} in step)' in err
    _wait_for(lambda: not _command_running(f"sleep 30; echo lint {token}"), 10, "lint still ran")
    assert not _command_running(token)
    _wait_for(lambda: _sessions(engine) == [], 10, "the session was not ended")

    # The full traceback, when asked for, comes with the same report.
    asked = subprocess.run(
        [*DIRK, "run", "--", sys.executable, str(program), busybox_ref, token],
        env={**env, "DIRK_TRACEBACK": "1"}, cwd=tmp_path, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert asked.returncode == 1
    assert "ExceptionGroup" in asked.stderr and "✗ step failed" in asked.stderr


# --- Ctrl-C ---------------------------------------------------------------------------------

LONG_PROGRAM = """
import sys

import dirk
from dirk import dag

with dirk.connection():
    ctr = dag.container().from_(sys.argv[1])
    ctr = ctr.with_exec(["sh", "-c", "sleep 60; echo " + sys.argv[2]])
    print("started", flush=True)
    ctr.stdout()  # STEP LINE
"""


def test_ctrl_c_says_what_was_stopped_and_exits_130(
    engine: RunningEngine, busybox_ref: str, tmp_path: Path
) -> None:
    program, line = _program(tmp_path, LONG_PROGRAM)
    token = uuid.uuid4().hex[:12]
    proc = subprocess.Popen(
        [*DIRK, "run", "--", sys.executable, str(program), busybox_ref, token],
        env=clean_env(DIRK_ENGINE=engine.socket_url), cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "started\n"
        _wait_for(lambda: _command_running(f"sleep 60; echo {token}"), 30, "the step did not start")
        proc.send_signal(signal.SIGINT)  # dirk run passes it on to the program
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert "✗ interrupted (Ctrl-C): the session was cancelled" in err
    assert "stopped while running (1):" in err
    assert f'with_exec sh -c "sleep 60; echo {token}" → stdout (at ci.py:{line} in <module>)' in err
    assert "dirk run: interrupted by SIGINT: stopped `" in err
    _wait_for(lambda: not _command_running(token), 10, "the container kept running")
    _wait_for(lambda: _sessions(engine) == [], 10, "the session was not ended")
