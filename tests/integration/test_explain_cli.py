"""`dirk run --explain`: after one input file changes, and after one env value changes, the
progress log says which, for the steps that ran again; through a real engine and containers."""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.sdk_engine import RunningEngine, clean_env, foreground_engine

pytestmark = pytest.mark.integration

PROGRAM = Path(__file__).with_name("explain_pipeline.py")
DIRK = Path(sys.executable).with_name("dirk")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def engine() -> Iterator[RunningEngine]:
    yield from foreground_engine()


def run(engine: RunningEngine, image: str, src: Path, level: str, nonce: str) -> list[str]:
    env = clean_env(engine.state_dir, PYTHONPATH=str(REPO / "src"))
    done = subprocess.run(
        [
            str(DIRK),
            "run",
            "--explain",
            "--progress",
            "plain",
            "--",
            sys.executable,
            str(PROGRAM),
            image,
            str(src),
            level,
            nonce,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith(f"level {level} {nonce}\n")
    return [line for line in done.stderr.splitlines() if " WHY " in line]


def test_explain_names_the_changed_file_and_the_changed_env_value(
    engine: RunningEngine, busybox_ref: str, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "main.py").write_text("print(1)\n")
    (src / "README").write_text("same\n")
    nonce = secrets.token_hex(4)
    run(engine, busybox_ref, src, "1", nonce)

    (src / "main.py").write_text("print(2)\n")
    after_file = run(engine, busybox_ref, src, "1", nonce)
    assert any(line.endswith(" WHY file changed: main.py") for line in after_file), after_file
    assert any(f"WHY mount /src (`host directory {src}`) changed" in line for line in after_file)

    after_env = run(engine, busybox_ref, src, "2", nonce)
    assert len(after_env) == 1, after_env
    assert after_env[0].endswith(" WHY env LEVEL changed: '1' → '2'")

    assert run(engine, busybox_ref, src, "2", nonce) == []  # all cached: nothing to explain
