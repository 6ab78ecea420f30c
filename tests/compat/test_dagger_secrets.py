"""Secrets through the released Dagger Python SDK inside `dirk run`: the command sees the
value, everything printed back reads `***`, env:// reads the program's environment."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from tests.compat.programs import PIPELINES, CompatTools, RunningEngine, run_program

pytestmark = pytest.mark.integration


def test_set_secret_and_with_secret_variable_are_scrubbed(
    request: pytest.FixtureRequest,
    compat_tools: CompatTools,
    engine: RunningEngine,
    python_image: str,
    workspace: Path,
    nonce: str,
) -> None:
    value = secrets.token_hex(12)
    result = run_program(
        request,
        [
            compat_tools.dirk,
            "run",
            "--",
            compat_tools.python,
            PIPELINES / "dagger_secrets.py",
            python_image,
            nonce,
            value,
        ],
        cwd=workspace,
        engine=engine,
        extra_env={"COMPAT_API_TOKEN": value},
    )
    assert result.returncode == 0, result.describe()
    out = json.loads(result.stdout.strip().splitlines()[-1])
    upper = value.upper()
    assert out["stdout"] == f"token=***\n{upper}\n"
    assert out["stderr"] == "***\n"
    assert out["plaintext"] == value
    assert out["env"] == f"token=***\n{upper}\n"
    assert out["mounted"] == f"1000 400\n{upper}"
    assert out["exec_error"]["stdout"] == "failing with ***\n"
    assert value not in out["exec_error"]["message"]
    assert value not in result.stderr and value not in result.engine_log
