"""The released Dagger TypeScript SDK (npm @dagger.io/dagger 0.21.9) drives dirk's engine unchanged.

Inside `dirk run` with `connect(client => ...)`, and alone with `_EXPERIMENTAL_DAGGER_CLI_BIN`
naming dirk with `connection()` and the global `dag`: then the SDK runs `dirk session` itself and
ends it with SIGTERM without waiting, so the test also checks that nothing is left running.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from unittest.mock import ANY

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


def _pipeline_in(workspace: Path, tools: CompatTools) -> Path:
    """The pipeline copied into the workspace next to a link to the SDK's node_modules: ES
    modules resolve packages from the importing file's folders, never from NODE_PATH."""
    (workspace / "node_modules").symlink_to(tools.node_modules, target_is_directory=True)
    return Path(shutil.copy(PIPELINES / "dagger_pipeline.mjs", workspace / "pipeline.mjs"))


def test_typescript_sdk_inside_dirk_run(
    request: pytest.FixtureRequest,
    compat_tools: CompatTools,
    engine: RunningEngine,
    python_image: str,
    workspace: Path,
    nonce: str,
) -> None:
    pipeline = _pipeline_in(workspace, compat_tools)
    result = run_program(
        request,
        [
            compat_tools.dirk,
            "run",
            "--",
            compat_tools.node,
            pipeline,
            "connect",
            python_image,
            nonce,
        ],
        cwd=workspace,
        engine=engine,
    )
    assert_pipeline_result(result)
    assert_cleaned_up(result)


def test_typescript_sdk_starts_dirk_session_itself(
    request: pytest.FixtureRequest,
    compat_tools: CompatTools,
    engine: RunningEngine,
    python_image: str,
    workspace: Path,
    nonce: str,
) -> None:
    pipeline = _pipeline_in(workspace, compat_tools)
    result = run_program(
        request,
        [compat_tools.node, pipeline, "dag", python_image, nonce],
        cwd=workspace,
        engine=engine,
        extra_env={"_EXPERIMENTAL_DAGGER_CLI_BIN": str(compat_tools.dirk)},
    )
    assert_pipeline_result(result)
    assert_cleaned_up(result)


def test_typescript_sdk_with_a_wrong_session_token_fails_at_once(
    request: pytest.FixtureRequest,
    compat_tools: CompatTools,
    engine: RunningEngine,
    python_image: str,
    workspace: Path,
    nonce: str,
) -> None:
    """The TS SDK only logs a failed `{ version }` check; every call then fails on its own."""
    pipeline = _pipeline_in(workspace, compat_tools)
    result = run_program(
        request,
        [compat_tools.node, pipeline, "connect", python_image, nonce],
        cwd=workspace,
        engine=engine,
        extra_env={
            "DAGGER_SESSION_PORT": str(engine.info["port"]),
            "DAGGER_SESSION_TOKEN": "not-a-session-token",
        },
    )
    steps = result.result_json()
    assert steps["python"] == {"error": ANY}, result.describe()
    error = str(steps["python"]["error"])
    assert error.startswith("GraphQLRequestError:") and "session token" in error, error
    assert "failed to check version compatibility" in result.stderr, result.describe()
    assert result.seconds < 20, f"the SDK kept retrying:\n{result.describe()}"
    assert not result.strays and not result.sessions, (result.strays, result.sessions)
