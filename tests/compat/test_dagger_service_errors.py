"""A failed service through the released Dagger Python SDK inside `dirk run`: Dagger's
ExecError with the service's exit code and output; its hostname resolves in its clients."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.compat.programs import PIPELINES, REGISTRY, CompatTools, RunningEngine, run_program

pytestmark = pytest.mark.integration


def test_python_sdk_sees_a_failed_service_as_an_exec_error(
    request: pytest.FixtureRequest,
    compat_tools: CompatTools,
    engine: RunningEngine,
    workspace: Path,
    nonce: str,
) -> None:
    result = run_program(
        request,
        [
            compat_tools.dirk,
            "run",
            "--",
            compat_tools.python,
            PIPELINES / "dagger_service_errors.py",
            f"{REGISTRY}/busybox:latest",
            nonce,
        ],
        cwd=workspace,
        engine=engine,
    )
    assert result.returncode == 0, result.describe()
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["by_hostname"] == "up\n"
    assert out["exec_error"]["exit_code"] == 5
    assert "no-config-file" in out["exec_error"]["stdout"]
