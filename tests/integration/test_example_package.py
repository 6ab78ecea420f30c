"""`examples/package/ci.py` end to end, twice: wheel, tests, Dockerfile image, publish with a
secret credential, export. The second run is served from the cache: its wheel is the same
file, byte for byte (a rebuilt wheel would carry new timestamps), and it publishes the same
image digest.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
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
EXAMPLE = REPO / "examples" / "package"
TOKEN = "tok-3f9a1c7e5b2d"


@pytest.fixture
def state() -> Iterator[Path]:
    require_root()
    path = new_state_dir()
    shutil.rmtree(EXAMPLE / "dist", ignore_errors=True)
    with adopting_orphans():
        yield path
        stop_leftover(path)
    shutil.rmtree(EXAMPLE / "dist", ignore_errors=True)


def run_example(state: Path) -> tuple[str, str]:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE / "ci.py")],
        env=clean_env(state, GREET_REGISTRY_TOKEN=TOKEN),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"the example exited with {proc.returncode}:\n{proc.stdout}\n{proc.stderr}\n"
            f"engine.log:\n{log_tail(state / 'engine.log')}"
        )
    return proc.stdout, proc.stderr


def wheel_digest() -> str:
    (wheel,) = (EXAMPLE / "dist").glob("greet-*.whl")
    return hashlib.sha256(wheel.read_bytes()).hexdigest()


def test_the_package_example_ships_and_its_second_run_is_cached(
    state: Path, python_ref: str
) -> None:
    out, log = run_example(state)
    assert "Ran 2 tests" in out and "OK" in out, out
    assert "Hello, Dockerfile!" in out  # the image built from the Dockerfile runs the script
    assert "Hello, registry!" in out  # and so does the same image pulled back from the registry
    published = re.search(r"published (\S+@sha256:[0-9a-f]{64})", out)
    assert published, out
    first_wheel = wheel_digest()

    out_again, log_again = run_example(state)
    assert published.group(1) in out_again, out_again
    assert wheel_digest() == first_wheel, "the wheel was built again: not served from the cache"
    state_files = [p for p in state.rglob("*") if p.is_file() and p.stat().st_size < 50_000_000]
    assert TOKEN not in log + log_again
    assert not any(TOKEN.encode() in p.read_bytes() for p in state_files if p.exists())
    info = read_engine_json(state)
    assert info is not None
    stop_detached(int(info["pid"]), state)
