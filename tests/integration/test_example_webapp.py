"""`examples/webapp/ci.py` end to end: the app's unit tests run against PostgreSQL as a
service, then the app itself runs as a service bound to the database and a client container
posts a note through it and reads it back. Nothing is left once its engine stops."""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.leaks import LeakWatch
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
EXAMPLE = REPO / "examples" / "webapp"


@pytest.fixture
def state(no_leaks: LeakWatch) -> Iterator[Path]:
    require_root()
    path = new_state_dir()
    with adopting_orphans():
        yield path
        stop_leftover(path)


def test_the_webapp_example_tests_against_the_database_and_serves_end_to_end(
    state: Path, postgres_ref: str, python_ref: str, busybox_ref: str
) -> None:
    note = f"note {secrets.token_hex(6)} with 'quotes' and; semicolons"
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE / "ci.py")],
        env=clean_env(state, WEBAPP_NOTE=note),
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
    out = proc.stdout
    assert "Ran 4 tests" in out and "\nOK" in out, out
    assert "test_a_note_is_stored_and_listed" in out and " ... ok" in out, out
    assert f"and read it back: {note!r}" in out, out
    info = read_engine_json(state)
    assert info is not None
    stop_detached(int(info["pid"]), state)
