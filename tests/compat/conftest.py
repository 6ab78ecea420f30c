"""Fixtures of the compatibility tests: the released official Dagger SDKs against a real engine.

The SDKs come from scripts/compat-tools.sh (`make compat-tools`): dagger-io in its own venv and
@dagger.io/dagger in its own node project under .cache/compat/. One `dirk engine` serves the whole
test session on a temporary state dir; every program under test gets DIRK_STATE_DIR so that
`dirk run` and `dirk session` find that engine. A missing tool or registry fails, never skips.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.compat.programs import (
    COMPAT,
    ENGINE_START_S,
    NODE_SDK,
    PY_SDK,
    PYTHON_IMAGE,
    REGISTRY,
    TIMINGS,
    CompatTools,
    RunningEngine,
    base_env,
    fail,
)
from tests.integration.leaks import no_leaks, pytest_runtest_teardown

__all__ = ["no_leaks", "pytest_runtest_teardown"]  # the leak check's fixture and its hook


@pytest.fixture(scope="session")
def compat_tools() -> CompatTools:
    """The installed official SDKs; fails with the command that installs them."""
    fix = "run `bash scripts/compat-tools.sh` (or `make compat-tools`)"
    python = COMPAT / "venv" / "bin" / "python"
    stamp = COMPAT / "venv" / ".sdk"
    if not python.exists() or not stamp.exists() or stamp.read_text().strip() != PY_SDK:
        fail(f"{PY_SDK} is not installed in {COMPAT / 'venv'}: {fix}")
    node_modules = COMPAT / "node" / "node_modules"
    package = node_modules / "@dagger.io" / "dagger" / "package.json"
    if not package.exists():
        fail(f"{NODE_SDK} is not installed in {COMPAT / 'node'}: {fix}")
    version = json.loads(package.read_text())["version"]
    if f"@dagger.io/dagger@{version}" != NODE_SDK:
        fail(f"{package} is version {version}, the tests need {NODE_SDK}: {fix}")
    node = shutil.which("node")
    if node is None:
        fail("node is not on PATH: install Node.js 20+ (Debian: apt-get install nodejs)")
    dirk = Path(sys.executable).parent / "dirk"
    if not dirk.exists():
        fail(f"{dirk} (dirk's console script) is missing: run `make setup`")
    return CompatTools(python=python, node=Path(str(node)), node_modules=node_modules, dirk=dirk)


@pytest.fixture(scope="session")
def python_image() -> str:
    """The test image every pipeline starts from, once the local registry serves it."""
    url = f"http://{REGISTRY}/v2/python/manifests/3.11"
    accept = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json"
    try:
        with httpx.Client(trust_env=False, timeout=5) as client:
            status = client.get(url, headers={"Accept": accept}).status_code
    except httpx.HTTPError as error:
        fail(f"the local registry {REGISTRY} does not answer ({error}): run `make images` first")
    if status != 200:
        fail(f"{PYTHON_IMAGE} is missing from the registry (HTTP {status}): run `make images`")
    return PYTHON_IMAGE


def _tail(path: Path, limit: int = 6000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return "(no log)"


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEngine]:
    """One `dirk engine` in the foreground for the whole test session, on a fresh state dir."""
    if os.geteuid() != 0:
        fail("the compat tests run dirk's engine, which needs root: run them as root")
    root = tmp_path_factory.mktemp("compat-engine")
    state = root / "state"
    log = root / "engine.log"
    env = {**base_env(), "DIRK_STATE_DIR": str(state)}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dirk", "engine"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        info = _wait_until_serving(state, proc, log)
        yield RunningEngine(state_dir=state, info=info, log=log)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            fail(f"`dirk engine` did not stop within 30 s of SIGTERM:\n{_tail(log)}")
    if code != 0:
        fail(f"`dirk engine` exited with {code} after SIGTERM:\n{_tail(log)}")
    mounts = _mounts_under(state)
    if mounts:
        fail(f"`dirk engine` left mounts under its state dir after SIGTERM: {mounts}")
    # The state holds an unpacked image per run: drop it (the log stays for a look afterwards).
    # Only with no mount below it, or rmtree would reach into what a mount shows.
    shutil.rmtree(state, ignore_errors=True)


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    with open("/proc/self/mounts") as f:
        points = [line.split()[1] for line in f]
    return [p for p in points if (p + "/").startswith(prefix)]


def _wait_until_serving(state: Path, proc: subprocess.Popen[bytes], log: Path) -> dict[str, object]:
    path = state / "engine.json"
    deadline = time.monotonic() + ENGINE_START_S
    while True:
        if proc.poll() is not None:
            fail(f"`dirk engine` exited with {proc.returncode} while starting:\n{_tail(log)}")
        if path.exists():
            try:
                info: dict[str, object] = json.loads(path.read_text())
                with httpx.Client(trust_env=False, timeout=2) as client:
                    client.get(f"http://127.0.0.1:{info['port']}/health").raise_for_status()
                return info
            except (ValueError, KeyError, httpx.HTTPError):
                pass
        if time.monotonic() > deadline:
            fail(f"`dirk engine` did not serve within {ENGINE_START_S:.0f} s:\n{_tail(log)}")
        time.sleep(0.05)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """The program's working directory, holding the host directory `src/` the pipelines read."""
    (tmp_path / "src" / "sub").mkdir(parents=True)
    (tmp_path / "src" / "hello.txt").write_text("hello from the host\n")
    (tmp_path / "src" / "sub" / "nested.txt").write_text("nested file\n")
    return tmp_path


@pytest.fixture
def nonce() -> str:
    return uuid.uuid4().hex[:12]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TIMINGS:
        terminalreporter.section("compat: program wall time (+ time to clean up after exit)")
        for nodeid, seconds, settled in TIMINGS:
            terminalreporter.write_line(f"{seconds:7.2f} s (+{settled:.2f} s)  {nodeid}")
