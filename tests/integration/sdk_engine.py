"""Helpers of the SDK integration tests: real `dirk engine` processes on throwaway state dirs.

Not a conftest: the test modules import what they need. State dirs live directly under /tmp
because the engine's unix socket path must stay under 108 bytes (pytest's tmp_path can be
longer). Every program under test gets an environment without DIRK_* and DAGGER_* variables, so
only what a test sets decides which engine the SDK uses.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest

#: Seconds an engine gets to publish engine.json and answer /health.
ENGINE_START_S = 20.0
#: Seconds an engine gets to exit after SIGTERM.
ENGINE_STOP_S = 30.0
#: prctl(2) option: orphaned descendants are re-parented to this process instead of init.
PR_SET_CHILD_SUBREAPER = 36


def clean_env(state_dir: Path | None = None, **extra: str) -> dict[str, str]:
    """This process's environment minus DIRK_*/DAGGER_*, plus DIRK_STATE_DIR and `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DIRK_", "DAGGER_"))}
    if state_dir is not None:
        env["DIRK_STATE_DIR"] = str(state_dir)
    env.update(extra)
    return env


#: Every state directory `new_state_dir` handed out, in order (the leak check watches the
#: ones made during a test: tests/integration/leaks.py).
MADE_STATE_DIRS: list[Path] = []


def new_state_dir() -> Path:
    """A fresh, short state directory path (not created: the engine or the SDK creates it)."""
    path = Path(tempfile.mkdtemp(prefix="dsdk-", dir="/tmp")) / "s"
    MADE_STATE_DIRS.append(path)
    return path


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below `path`, from /proc/self/mounts."""
    prefix = str(path.resolve()) + "/"
    with open("/proc/self/mounts") as f:
        points = [line.split()[1] for line in f]
    return [p for p in points if (p + "/").startswith(prefix)]


def log_tail(path: Path, limit: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return "(no log)"


def pid_running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (an orphan waits for init to reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def read_engine_json(state_dir: Path) -> dict[str, Any] | None:
    try:
        info = json.loads((state_dir / "engine.json").read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def health_ok(info: dict[str, Any]) -> bool:
    try:
        with httpx.Client(trust_env=False, timeout=2) as client:
            return client.get(f"http://127.0.0.1:{info['port']}/health").status_code == 200
    except (httpx.HTTPError, KeyError):
        return False


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("dirk's engine needs root: run the SDK integration tests as root", False)


@attrs.frozen
class RunningEngine:
    """An engine serving a state dir: where to reach it."""

    state_dir: Path
    info: dict[str, Any]
    log: Path

    @property
    def pid(self) -> int:
        return int(self.info["pid"])

    @property
    def port(self) -> int:
        return int(self.info["port"])

    @property
    def socket_url(self) -> str:
        """The value for `dirk.Config(engine=...)` or DIRK_ENGINE."""
        return f"unix://{self.info['socket']}"

    @property
    def admin_token(self) -> str:
        return str(self.info["admin_token"])


def wait_until_serving(
    state_dir: Path, log: Path, proc: subprocess.Popen[bytes] | None = None
) -> dict[str, Any]:
    """engine.json, once it exists and its engine answers /health."""
    deadline = time.monotonic() + ENGINE_START_S
    while True:
        if proc is not None and proc.poll() is not None:
            pytest.fail(
                f"`dirk engine` exited with {proc.returncode} while starting:\n{log_tail(log)}",
                False,
            )
        info = read_engine_json(state_dir)
        if info is not None and health_ok(info):
            return info
        if time.monotonic() > deadline:
            pytest.fail(
                f"`dirk engine` did not serve within {ENGINE_START_S:.0f} s:\n{log_tail(log)}",
                False,
            )
        time.sleep(0.05)


def check_clean_stop(state_dir: Path, log: Path) -> None:
    """What a clean SIGTERM leaves: no engine.json, no socket, no mount under the state dir."""
    problems = []
    if (state_dir / "engine.json").exists():
        problems.append("engine.json is still there")
    if (state_dir / "engine.sock").exists():
        problems.append("engine.sock is still there")
    mounts = mounts_under(state_dir)
    if mounts:
        problems.append(f"mounts are left under the state dir: {mounts}")
    if problems:
        pytest.fail(f"the engine did not stop cleanly: {'; '.join(problems)}\n{log_tail(log)}")


@contextlib.contextmanager
def adopting_orphans() -> Iterator[None]:
    """Makes this process the subreaper of its descendants for the block: an engine that a
    program under test starts detached becomes our child when that program exits, so its exit
    code can be read (`stop_detached`) instead of only seeing it disappear."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        pytest.fail(f"prctl(PR_SET_CHILD_SUBREAPER) failed: errno {ctypes.get_errno()}", False)
    try:
        yield
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def parent_of(pid: int) -> int | None:
    """The parent pid of `pid`, from /proc; None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def wait_exit(pid: int, timeout: float) -> int | None:
    """Waits for `pid` to exit; its exit code when it is our child (then it is reaped)."""
    adopted = parent_of(pid) == os.getpid()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if adopted:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done == pid:
                return os.waitstatus_to_exitcode(status)
        elif not pid_running(pid):
            return None
        time.sleep(0.02)
    raise TimeoutError(pid)


def stop_detached(pid: int, state_dir: Path) -> float:
    """SIGTERMs an engine the SDK started detached; returns the seconds it took to exit and
    checks that it exited cleanly (exit code 0 when it was adopted, see `adopting_orphans`)."""
    log = state_dir / "engine.log"
    started = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    try:
        code = wait_exit(pid, ENGINE_STOP_S)
    except TimeoutError:
        os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError, ChildProcessError):
            wait_exit(pid, 5)
        pytest.fail(
            f"the engine (pid {pid}) ignored SIGTERM for {ENGINE_STOP_S:.0f} s; "
            f"killed it\n{log_tail(log)}"
        )
    took = time.monotonic() - started
    if code not in (0, None):
        pytest.fail(f"the engine (pid {pid}) exited with {code} after SIGTERM:\n{log_tail(log)}")
    check_clean_stop(state_dir, log)
    if "engine stopped" not in log_tail(log, 500):
        pytest.fail(
            f"the engine (pid {pid}) exited without logging its clean stop:\n{log_tail(log)}"
        )
    return took


def stop_leftover(state_dir: Path) -> None:
    """Teardown: stops (and reaps) whatever engine a failed test left on `state_dir`, then
    deletes the state dir."""
    info = read_engine_json(state_dir)
    if info is not None and pid_running(int(info["pid"])):
        pid = int(info["pid"])
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError, ChildProcessError):
            wait_exit(pid, ENGINE_STOP_S)
    remove_state(state_dir)


def remove_state(state_dir: Path) -> None:
    """Deletes a stopped engine's state dir (and its mkdtemp parent), never through a mount."""
    if not mounts_under(state_dir):
        shutil.rmtree(state_dir.parent, ignore_errors=True)


def foreground_engine(**env: str) -> Iterator[RunningEngine]:
    """A `dirk engine` child process on a fresh state dir, SIGTERMed and checked at the end;
    `env`: variables added to its environment.

    Use as the body of a module-scoped fixture: `yield from foreground_engine()`.
    """
    require_root()
    state = new_state_dir()
    log = state.parent / "engine.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dirk", "engine"],
            env=clean_env(state, **env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        info = wait_until_serving(state, log, proc)
        yield RunningEngine(state_dir=state, info=info, log=log)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(ENGINE_STOP_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail(
                f"`dirk engine` ignored SIGTERM for {ENGINE_STOP_S:.0f} s:\n{log_tail(log)}"
            )
    if code != 0:
        pytest.fail(f"`dirk engine` exited with {code} after SIGTERM:\n{log_tail(log)}")
    check_clean_stop(state, log)
    remove_state(state)
