"""A program with no engine running gets its result; the engine it started serves the next one.

Each test runs real Python programs (`python -c`) on a fresh DIRK_STATE_DIR with no DIRK_* or
DAGGER_* variables, exactly like a user's first pipeline on a new machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.sdk_engine import (
    adopting_orphans,
    clean_env,
    log_tail,
    mounts_under,
    new_state_dir,
    parent_of,
    pid_running,
    read_engine_json,
    require_root,
    stop_detached,
    stop_leftover,
    wait_exit,
)
from tests.unit.test_hot_path_imports import NOT_IN_SDK

pytestmark = pytest.mark.integration

#: A user's program: one pipeline whose exec takes a second and prints a random token, so a
#: cache hit shows both in the time and, whatever the machine's load, in an identical output.
PROGRAM = """
import json, sys, time
import dirk

started = time.monotonic()
with dirk.Connection() as client:
    out = (
        client.container()
        .from_(sys.argv[1])
        .with_env_variable("NONCE", sys.argv[2])
        .with_exec(["sh", "-c", "sleep 1; echo built $NONCE $(cat /proc/sys/kernel/random/uuid)"])
        .stdout()
    )
loaded = sorted({name.split(".")[0] for name in sys.modules})
print(json.dumps({"out": out, "seconds": time.monotonic() - started, "modules": loaded}))
"""
PROGRAM_TIMEOUT_S = 60


@pytest.fixture
def state() -> Iterator[Path]:
    """A fresh state dir; the engines programs start on it become our children (so their exit
    codes can be checked), and whatever engine a test left running is stopped afterwards."""
    require_root()
    path = new_state_dir()
    with adopting_orphans():
        yield path
        stop_leftover(path)


def start_program(state: Path, image: str, nonce: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", PROGRAM, image, nonce],
        env=clean_env(state),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str], state: Path) -> dict[str, Any]:
    """The program's JSON line, once it exited 0; fails with its stderr and the engine log."""
    try:
        out, err = proc.communicate(timeout=PROGRAM_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(
            f"the program hung for {PROGRAM_TIMEOUT_S} s:\n{err}\n{log_tail(state / 'engine.log')}"
        )
    if proc.returncode != 0:
        pytest.fail(
            f"the program exited with {proc.returncode}:\n{err}\n"
            f"engine.log:\n{log_tail(state / 'engine.log')}"
        )
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def run_program(state: Path, image: str, nonce: str, cwd: Path) -> dict[str, Any]:
    return finish(start_program(state, image, nonce, cwd), state)


def engine_starts(state: Path) -> int:
    """How many engines logged that they serve this state dir."""
    return log_tail(state / "engine.log", 1_000_000).count("serving on")


def test_first_program_starts_the_engine_and_the_next_reuses_it(
    state: Path, busybox_ref: str, tmp_path: Path
) -> None:
    nonce = uuid.uuid4().hex[:12]
    assert not state.exists()

    first = run_program(state, busybox_ref, nonce, tmp_path)
    assert first["out"].startswith(f"built {nonce} "), first
    info = read_engine_json(state)
    assert info is not None, f"no engine.json after the first program:\n{os.listdir(state)}"
    pid = int(info["pid"])
    assert pid_running(pid), "the engine the first program started died with it"
    assert parent_of(pid) == os.getpid()  # adopted: its exit code is checked at the end
    assert (state / "engine.sock").exists()

    second = run_program(state, busybox_ref, nonce, tmp_path)
    assert second["out"] == first["out"]
    again = read_engine_json(state)
    assert again is not None and int(again["pid"]) == pid, "the second program started an engine"
    assert engine_starts(state) == 1
    # A whole program (connect, query, end the session) loads nothing the SDK's hot path
    # must not (tests/unit/test_hot_path_imports.py names them and says why).
    assert set(second["modules"]) & NOT_IN_SDK == set()
    # The same random token: the second program's answer came from the cache (the exec, which
    # sleeps 1 s, ran once); its time is reported below, not asserted: CI machines may be loaded.
    assert first["seconds"] > 1.0, first

    took = stop_detached(pid, state)
    print(
        f"\nfirst program {first['seconds']:.2f} s (engine start + pull + exec), "
        f"second {second['seconds']:.2f} s (cached), engine stop {took:.2f} s"
    )


def test_two_programs_starting_at_once_share_one_engine(
    state: Path, busybox_ref: str, tmp_path: Path
) -> None:
    nonce = uuid.uuid4().hex[:12]
    procs = [start_program(state, busybox_ref, nonce, tmp_path) for _ in range(2)]
    results = [finish(proc, state) for proc in procs]
    outs = [r["out"] for r in results]
    assert outs[0].startswith(f"built {nonce} ") and outs[1] == outs[0], outs  # one exec ran
    log = log_tail(state / "engine.log", 1_000_000)
    assert engine_starts(state) == 1, log
    assert "already running" not in log, log
    info = read_engine_json(state)
    assert info is not None
    stop_detached(int(info["pid"]), state)


def test_a_killed_engine_is_replaced_and_its_cache_survives(
    state: Path, busybox_ref: str, tmp_path: Path
) -> None:
    nonce = uuid.uuid4().hex[:12]
    first = run_program(state, busybox_ref, nonce, tmp_path)
    info = read_engine_json(state)
    assert info is not None
    old_pid = int(info["pid"])
    os.kill(old_pid, signal.SIGKILL)
    assert wait_exit(old_pid, 10) == -signal.SIGKILL
    assert (state / "engine.json").exists()  # stale: the killed engine could not remove it

    second = run_program(state, busybox_ref, nonce, tmp_path)
    # The same random token: the exec did not run again, its result came from the disk cache.
    assert second["out"] == first["out"], "the cache did not survive the engine's restart"
    info = read_engine_json(state)
    assert info is not None and int(info["pid"]) != old_pid
    stop_detached(int(info["pid"]), state)
    assert not mounts_under(state)
