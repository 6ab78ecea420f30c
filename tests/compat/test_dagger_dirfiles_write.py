"""The released Dagger Python SDK on dirk's writing fields: symlinks, timestamps, changesets,
patches, volatile variables, combined output, mounts, env files, healthchecks, withError."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.compat.programs import PIPELINES, REGISTRY, CompatTools, RunningEngine, run_program

pytestmark = pytest.mark.integration


def test_python_sdk_writes_and_compares(
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
            PIPELINES / "dagger_dirfiles_write.py",
            f"{REGISTRY}/busybox:latest",
            nonce,
        ],
        cwd=workspace,
        engine=engine,
    )
    got = result.result_json()
    assert got == {
        "added": ["link"],
        "modified": ["a.txt"],
        "removed": ["gone.txt"],
        "empty": False,
        "patch_has_nonce": True,
        "applied": nonce + "\n",
        "combined": f"a.txt\n1600000000\n{nonce}\n",
        "mounts": [],
        "env_get": "hi!",
        "healthcheck": [["true"], "5s"],
        "with_error": got["with_error"],
    }, result.describe()
    assert f"stop: {nonce}" in got["with_error"]["error"]
