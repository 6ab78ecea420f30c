"""`examples/demo/ci.py` end to end, as `make demo` runs it: twice, the second from the cache.

The demo's container installs pytest from PyPI through the engine's NAT (the pip cache is a
cache volume), so this test needs the machine's outbound access to PyPI.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.sdk_engine import (
    adopting_orphans,
    clean_env,
    log_tail,
    new_state_dir,
    read_engine_json,
    require_root,
    stop_detached,
    stop_leftover,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "examples" / "demo" / "ci.py"


@pytest.fixture
def state() -> Iterator[Path]:
    require_root()
    path = new_state_dir()
    with adopting_orphans():
        yield path
        stop_leftover(path)


def run_demo(state: Path) -> tuple[float, str, str]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(DEMO)],
        env=clean_env(state),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    took = time.monotonic() - started
    if proc.returncode != 0:
        pytest.fail(
            f"the demo exited with {proc.returncode} after {took:.1f} s:\n{proc.stdout}\n"
            f"{proc.stderr}\nengine.log:\n{log_tail(state / 'engine.log')}"
        )
    return took, proc.stdout, proc.stderr


def test_demo_passes_and_its_second_run_comes_from_the_cache(state: Path, python_ref: str) -> None:
    first, out, log = run_demo(state)
    assert "2 passed" in out, out
    # The plain step stream, ending with its summary: every step ran.
    assert "[dirk] " in log and " 0 cached" in log, log

    second, out_again, log_again = run_demo(state)
    assert "2 passed" in out_again, out_again
    assert " 0 run, " in log_again, log_again  # everything came from the cache
    info = read_engine_json(state)
    assert info is not None, "the demo's engine should stay up for the next program"
    took = stop_detached(int(info["pid"]), state)
    print(f"\ndemo: first run {first:.1f} s, second run {second:.2f} s, engine stop {took:.2f} s")
