"""The released Dagger Python SDK shows dirk's progress: its `log_output` gets the stderr of the
`dirk session` it starts, where each step's lines appear, secrets scrubbed."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import pytest

from tests.compat.programs import (
    PIPELINES,
    CompatTools,
    RunningEngine,
    assert_cleaned_up,
    run_program,
)

pytestmark = pytest.mark.integration


def test_log_output_gets_the_plain_step_stream(
    request: pytest.FixtureRequest,
    compat_tools: CompatTools,
    engine: RunningEngine,
    python_image: str,
    workspace: Path,
    nonce: str,
) -> None:
    value = secrets.token_hex(16)
    result = run_program(
        request,
        [compat_tools.python, PIPELINES / "dagger_progress.py", python_image, nonce, value],
        cwd=workspace,
        engine=engine,
        extra_env={"_EXPERIMENTAL_DAGGER_CLI_BIN": str(compat_tools.dirk)},
    )
    assert result.returncode == 0, result.describe()
    assert result.stdout == f"hello {nonce}\na***b\n", result.describe()
    lines = result.stderr.splitlines()
    steps = {
        m.group(2): int(m.group(1))
        for m in map(re.compile(r"\[(\d+)\] (.*)").fullmatch, lines)
        if m
    }
    execs = [name for name in steps if name.startswith("sh -c 'echo hello")]
    assert execs, result.describe()
    exec_name = execs[0]
    n = steps[exec_name]
    prefix = f"[{n}] {exec_name[:31]}\u2026  | "
    assert f"{prefix}hello {nonce}" in lines, result.describe()
    assert f"{prefix}a***b" in lines, result.describe()
    assert any(re.fullmatch(rf"\[{n}\] DONE \d+\.\ds", line) for line in lines), result.describe()
    assert any(line.startswith("[dirk] ") and " run, " in line for line in lines)
    assert value[:10] not in result.stderr and value[10:] not in result.stderr
    assert_cleaned_up(result)
