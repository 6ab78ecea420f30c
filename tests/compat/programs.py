"""Running a program under test (an official-SDK pipeline) and judging what it printed.

Every program gets a marker in its environment, which its children inherit: after it exits,
live processes that still carry the marker were left behind (e.g. an SDK's `dirk session`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NoReturn

import attrs
import pytest

REPO = Path(__file__).resolve().parents[2]
PIPELINES = Path(__file__).resolve().parent / "pipelines"
COMPAT = REPO / ".cache" / "compat"
PY_SDK = "dagger-io==0.21.11"
NODE_SDK = "@dagger.io/dagger@0.21.9"
REGISTRY = "127.0.0.1:5000"
PYTHON_IMAGE = f"{REGISTRY}/python:3.11"
#: Environment variable naming every process a program under test starts (children inherit it),
#: so that processes left behind after it exits can be found.
MARK = "DIRK_COMPAT_RUN"
ENGINE_START_S = 30.0
PROGRAM_TIMEOUT_S = 240.0
#: How long the SDK's session child may take to go away after the program exits (the TS SDK
#: sends SIGTERM and does not wait).
STRAY_GRACE_S = 10.0

#: (test id, seconds to exit, seconds to settle) of every program run, printed at the end.
TIMINGS: list[tuple[str, float, float]] = []


@attrs.frozen
class CompatTools:
    python: Path  # the compat venv's interpreter (has dagger-io, not dirk)
    node: Path
    node_modules: Path  # holds @dagger.io/dagger
    dirk: Path  # the `dirk` console script of the venv running the tests


@attrs.frozen
class RunningEngine:
    state_dir: Path
    info: Mapping[str, object]  # engine.json
    log: Path


@attrs.frozen
class ProgramResult:
    args: Sequence[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float  # from start to exit
    settled: float  # from exit until its processes and sessions were gone (or the grace ran out)
    strays: Sequence[str]  # "pid cmdline" of processes it left behind
    sessions: Sequence[str]  # ids of the sessions it opened (engine log)
    open_sessions: Sequence[str]  # those it did not end
    engine_log: str  # what the engine logged while the program ran

    def describe(self) -> str:
        return (
            f"`{' '.join(self.args)}` exited with {self.returncode} after {self.seconds:.1f} s\n"
            f"--- stdout ---\n{self.stdout[-4000:]}\n--- stderr ---\n{self.stderr[-8000:]}\n"
            f"--- engine log meanwhile ---\n{self.engine_log[-4000:]}"
        )

    def result_json(self) -> dict[str, object]:
        """The pipeline's one JSON line (the last line of stdout)."""
        lines = self.stdout.strip().splitlines()
        assert self.returncode == 0 and lines, self.describe()
        try:
            value = json.loads(lines[-1])
        except ValueError:
            pytest.fail(f"the pipeline's last line is not JSON:\n{self.describe()}")
        assert isinstance(value, dict), self.describe()
        return value


def fail(message: str) -> NoReturn:
    pytest.fail(message, pytrace=False)


def base_env() -> dict[str, str]:
    """The test's environment without the caller's session or engine settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DAGGER_", "DIRK_", "_EXPERIMENTAL_DAGGER"))
    }
    # The SDKs talk to 127.0.0.1 with clients that honour proxy variables.
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def _processes_marked(mark: str) -> list[str]:
    """'pid cmdline' of every live process whose environment holds `mark`."""
    found = []
    needle = mark.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            if needle not in environ.split(b"\0"):
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone, or a kernel thread
            continue
        if cmdline.strip():  # zombies have an empty cmdline and are already dead
            found.append(f"{entry.name} {cmdline.strip()}")
    return found


def run_program(
    request: pytest.FixtureRequest,
    args: Sequence[str | Path],
    *,
    cwd: Path,
    engine: RunningEngine,
    extra_env: Mapping[str, str] | None = None,
) -> ProgramResult:
    """Run a program under test to its end, time it, and collect processes it left behind
    (killed afterwards so one failure does not leak into the next test)."""
    mark = f"{MARK}={uuid.uuid4().hex}"
    env = {**base_env(), "DIRK_STATE_DIR": str(engine.state_dir), **(extra_env or {})}
    name, _, value = mark.partition("=")
    env[name] = value
    argv = [str(a) for a in args]
    log_start = engine.log.stat().st_size
    start = time.monotonic()
    # Output goes to files, not pipes: a process left behind holding a pipe would make us wait
    # for it; this way we wait for the program alone.
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err
        )
        try:
            returncode = proc.wait(PROGRAM_TIMEOUT_S)
            note = ""
        except subprocess.TimeoutExpired:
            proc.kill()
            returncode = proc.wait()
            note = f"\n(killed after {PROGRAM_TIMEOUT_S:.0f} s)"
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace") + note
    exited = time.monotonic()
    deadline = exited + STRAY_GRACE_S
    while True:
        strays = _processes_marked(mark)
        engine_log = _read_from(engine.log, log_start)
        sessions, open_sessions = _sessions(engine_log)
        if (not strays and not open_sessions) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    settled = time.monotonic() - exited
    for stray in strays:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(stray.split()[0]), signal.SIGKILL)
    seconds = exited - start
    TIMINGS.append((request.node.nodeid, seconds, settled))
    return ProgramResult(
        argv,
        returncode,
        stdout,
        stderr,
        seconds,
        settled,
        strays,
        sessions,
        open_sessions,
        engine_log,
    )


#: How dirk.engine.sessions logs a session's start and end (INFO level, in the engine's log).
SESSION_EVENT = re.compile(r"\bsession (\S+) (started|ended)\b")


def _read_from(log: Path, offset: int) -> str:
    with log.open("rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


def _sessions(text: str) -> tuple[list[str], list[str]]:
    """Ids of the sessions started in this part of the engine's log, and of those not ended."""
    started: list[str] = []
    ended: set[str] = set()
    for match in SESSION_EVENT.finditer(text):
        if match[2] == "started":
            started.append(match[1])
        else:
            ended.add(match[1])
    return started, [s for s in started if s not in ended]


def expected_result() -> dict[str, object]:
    """What both pipelines print, as a user of Dagger would expect it."""
    return {
        "python": "3.11\n",
        "env": "hello dagger\n",
        "pwd": "/work\n",
        "env_lookup": "hello dagger",
        "host_file": "hello from the host\n",
        "host_entries": ["hello.txt", "sub/"],
        "nested": "nested file\n",
        "written": "HELLO.TXT\nSUB\n",
        "new_file": "made by with_new_file\n",
        "concurrent": ["0\n", "1\n", "2\n"],
        "cache_counts": ["1", "2"],
        "exec_error": {
            "exit_code": 3,
            "stdout": "to-stdout\n",
            "stderr": "to-stderr\n",
            "cmd": ["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3"],
            "message": "(contains 'exit code: 3')",
        },
        "missing_command": {
            "exit_code": 1,
            "stderr": 'exec: "no-such-command": executable file not found in $PATH\n',
            "cmd": ["no-such-command", "--flag"],
        },
        "expect_any_exit_code": 5,
        "after_sync": "synced\n",
    }


def assert_pipeline_result(result: ProgramResult) -> None:
    """Compare the printed JSON with expectations, key by key for readable failures."""
    got = result.result_json()
    want = expected_result()
    error = got.get("exec_error")
    if isinstance(error, dict) and "exit_code" in error:
        message = str(error.get("message", ""))
        if "exit code: 3" in message:  # Dagger's wording; the output is not in the message
            error["message"] = "(contains 'exit code: 3')"
    mismatches = {
        key: {"want": want[key], "got": got.get(key, "(missing)")}
        for key in want
        if got.get(key, "(missing)") != want[key]
    }
    assert not mismatches, (
        f"{json.dumps(mismatches, indent=2)}\n--- engine log meanwhile ---\n"
        f"{result.engine_log[-4000:]}"
    )


def assert_cleaned_up(result: ProgramResult) -> None:
    """The program used one session, and nothing it started outlives it: no process, no
    engine session."""
    assert len(result.sessions) == 1, (
        f"the engine log shows {len(result.sessions)} sessions started by the program, not 1 "
        f"(looked for 'session <id> started' lines): {result.sessions}"
    )
    assert not result.strays, (
        f"processes left running {STRAY_GRACE_S:.0f} s after the program exited "
        f"(killed now): {result.strays}"
    )
    assert not result.open_sessions, (
        f"sessions still open {STRAY_GRACE_S:.0f} s after the program exited (the engine log "
        f"has 'session <id> started' but no 'ended'): {result.open_sessions}"
    )
