"""The released Dagger Python SDK (PyPI dagger-io 0.21.11) drives dirk's engine unchanged.

Both ways a Dagger user starts a pipeline: inside `dirk run` (like `dagger run`: the SDK finds
DAGGER_SESSION_PORT/TOKEN), and alone with `_EXPERIMENTAL_DAGGER_CLI_BIN` naming dirk (the SDK
runs `dirk session` itself, reads its JSON line, and ends it by closing its stdin: the program
only exits 0 if `dirk session` exited 0).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.compat.programs import (
    PIPELINES,
    CompatTools,
    RunningEngine,
    assert_cleaned_up,
    assert_pipeline_result,
    run_program,
)

pytestmark = pytest.mark.integration

PIPELINE = PIPELINES / "dagger_pipeline.py"


def test_python_sdk_inside_dirk_run(
    request: pytest.FixtureRequest,
    compat_tools: CompatTools,
    engine: RunningEngine,
    python_image: str,
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
            PIPELINE,
            "connection",
            python_image,
            nonce,
        ],
        cwd=workspace,
        engine=engine,
    )
    assert_pipeline_result(result)
    assert_cleaned_up(result)


def test_python_sdk_starts_dirk_session_itself(
    request: pytest.FixtureRequest,
    compat_tools: CompatTools,
    engine: RunningEngine,
    python_image: str,
    workspace: Path,
    nonce: str,
) -> None:
    result = run_program(
        request,
        [compat_tools.python, PIPELINE, "dag", python_image, nonce],
        cwd=workspace,
        engine=engine,
        extra_env={"_EXPERIMENTAL_DAGGER_CLI_BIN": str(compat_tools.dirk)},
    )
    assert_pipeline_result(result)
    assert_cleaned_up(result)


def test_python_sdk_with_a_wrong_session_token_fails_at_once(
    request: pytest.FixtureRequest,
    compat_tools: CompatTools,
    engine: RunningEngine,
    python_image: str,
    workspace: Path,
    nonce: str,
) -> None:
    result = run_program(
        request,
        [compat_tools.python, PIPELINE, "connection", python_image, nonce],
        cwd=workspace,
        engine=engine,
        extra_env={
            "DAGGER_SESSION_PORT": str(engine.info["port"]),
            "DAGGER_SESSION_TOKEN": "not-a-session-token",
        },
    )
    assert result.returncode != 0, result.describe()
    assert "dagger.ClientConnectionError" in result.stderr, result.describe()
    assert "session token" in result.stderr, result.describe()
    assert result.seconds < 20, f"the SDK kept retrying:\n{result.describe()}"
    assert not result.strays and not result.sessions, (result.strays, result.sessions)
