"""`dirk engine`, `dirk session` and `dirk run` as real processes against the real engine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration

DIRK = [sys.executable, "-m", "dirk"]
SDK_FLAGS = ["--label", "dagger.io/sdk.name:python", "--label", "dagger.io/sdk.version:0.21.11"]


def _env(state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGGER_", "DIRK_"))}
    env["DIRK_STATE_DIR"] = str(state)
    return env


def _wait_for_engine_json(state: Path, proc: subprocess.Popen[bytes] | None = None) -> Any:
    path = state / "engine.json"
    deadline = time.monotonic() + 15
    while not path.exists():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"`dirk engine` exited with {proc.returncode}: {_stderr(proc)}")
        if time.monotonic() > deadline:
            pytest.fail(f"{path} did not appear within 15 s")
        time.sleep(0.01)
    return json.loads(path.read_text())


def _stderr(proc: subprocess.Popen[bytes]) -> str:
    return proc.stderr.read().decode(errors="replace") if proc.stderr else ""


def _query(port: int, token: str, query: str = "{ version }") -> httpx.Response:
    with httpx.Client(trust_env=False, timeout=30) as client:
        return client.post(
            f"http://127.0.0.1:{port}/query", json={"query": query}, auth=(token, "")
        )


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def engine(state: Path) -> Iterator[dict[str, Any]]:
    """A `dirk engine` in the foreground on a fresh state dir; its engine.json."""
    proc = subprocess.Popen(
        [*DIRK, "engine"], env=_env(state), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        yield _wait_for_engine_json(state, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail("`dirk engine` did not stop within 30 s of SIGTERM")
    assert code == 0, _stderr(proc)
    assert not (state / "engine.json").exists(), "engine.json left behind after SIGTERM"
    assert not (state / "engine.sock").exists(), "engine.sock left behind after SIGTERM"


def _start_session(
    state: Path, *extra: str, cwd: Path | None = None
) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    proc = subprocess.Popen(
        [*DIRK, "session", *SDK_FLAGS, *extra],
        env=_env(state),
        cwd=cwd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(10)
        pytest.fail(f"`dirk session` printed nothing (exit {proc.returncode}): {_stderr(proc)}")
    return proc, json.loads(line)


def test_engine_publishes_itself_and_answers(engine: dict[str, Any], state: Path) -> None:
    assert engine["socket"] == str(state / "engine.sock")
    assert (state / "engine.json").stat().st_mode & 0o777 == 0o600
    with httpx.Client(trust_env=False) as client:
        health = client.get(f"http://127.0.0.1:{engine['port']}/health").json()
    assert health == {"version": engine["version"]}


def test_second_engine_on_same_state_dir_fails(engine: dict[str, Any], state: Path) -> None:
    second = subprocess.run(
        [*DIRK, "engine"], env=_env(state), capture_output=True, text=True, timeout=30
    )
    assert second.returncode == 1
    assert f"an engine is already running (pid {engine['pid']})" in second.stderr
    assert json.loads((state / "engine.json").read_text()) == engine


def test_session_handshake_like_the_python_sdk(
    engine: dict[str, Any], state: Path, tmp_path: Path
) -> None:
    proc, params = _start_session(state, "--workdir", str(tmp_path))
    assert set(params) == {"port", "session_token"}
    assert params["port"] == engine["port"]
    answer = _query(params["port"], params["session_token"])
    assert answer.status_code == 200 and answer.json()["data"]["version"]
    assert proc.stdin is not None
    proc.stdin.close()  # what the Python SDK does to end the session
    assert proc.wait(30) == 0, _stderr(proc)
    assert _query(params["port"], params["session_token"]).status_code == 401


def test_session_ends_on_sigterm_like_the_ts_sdk(engine: dict[str, Any], state: Path) -> None:
    proc, params = _start_session(state)
    assert _query(params["port"], params["session_token"]).status_code == 200
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0, _stderr(proc)
    assert _query(params["port"], params["session_token"]).status_code == 401


def test_session_accepts_dagger_flags_it_does_not_use(engine: dict[str, Any], state: Path) -> None:
    proc, params = _start_session(
        state, "--project", "/nowhere/dagger.json", "--load-workspace-modules", "--future-flag"
    )
    assert _query(params["port"], params["session_token"]).status_code == 200
    assert proc.stdin is not None
    proc.stdin.close()
    assert proc.wait(30) == 0
    assert "--project is ignored" in _stderr(proc)


def test_session_starts_an_engine_when_none_runs(state: Path) -> None:
    proc, params = _start_session(state)
    try:
        info = json.loads((state / "engine.json").read_text())
        assert params["port"] == info["port"]
        assert _query(params["port"], params["session_token"]).status_code == 200
        assert proc.stdin is not None
        proc.stdin.close()
        assert proc.wait(30) == 0, _stderr(proc)
    finally:
        info = json.loads((state / "engine.json").read_text())
        os.kill(info["pid"], signal.SIGTERM)
        deadline = time.monotonic() + 30
        while (state / "engine.json").exists() and time.monotonic() < deadline:
            time.sleep(0.05)


CHILD = textwrap.dedent(
    """
    import os, sys, httpx
    port, token = os.environ["DAGGER_SESSION_PORT"], os.environ["DAGGER_SESSION_TOKEN"]
    r = httpx.post(f"http://127.0.0.1:{port}/query", json={"query": "{ version }"},
                   auth=(token, ""), trust_env=False)
    print(r.status_code, r.json()["data"]["version"], sys.argv[1:])
    sys.exit(3)
    """
)


def test_run_gives_the_command_a_session_and_its_exit_code(
    engine: dict[str, Any], state: Path
) -> None:
    result = subprocess.run(
        [*DIRK, "run", "--", sys.executable, "-c", CHILD, "-v", "--flag"],
        env=_env(state),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3, result.stderr
    assert result.stdout.strip() == f"200 {engine['version']} ['-v', '--flag']"


def test_run_forwards_sigterm_to_the_command(engine: dict[str, Any], state: Path) -> None:
    proc = subprocess.Popen(
        [
            *DIRK,
            "run",
            sys.executable,
            "-c",
            "import time; print('up', flush=True); time.sleep(60)",
        ],
        env=_env(state),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"up\n"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 128 + signal.SIGTERM


def test_run_forwards_a_signal_sent_as_the_command_starts(
    engine: dict[str, Any], state: Path
) -> None:
    # The command signals `dirk run` first thing: the handlers must already be in place.
    result = subprocess.run(
        [*DIRK, "run", "sh", "-c", "kill -TERM $PPID; exec sleep 60"],
        env=_env(state),
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 128 + signal.SIGTERM, result.stderr


def test_run_reports_a_missing_command(engine: dict[str, Any], state: Path) -> None:
    result = subprocess.run(
        [*DIRK, "run", "--", "no-such-command-xyz"],
        env=_env(state),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 127  # as a shell says "command not found"
    assert "dirk run: command not found: no-such-command-xyz" in result.stderr
