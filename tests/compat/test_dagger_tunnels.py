"""The released Dagger Python SDK's tunnels work on dirk: `host().tunnel(svc).endpoint()`
fetched from the host, and `host().service()` reached from a container, inside `dirk run`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.compat.programs import (
    PIPELINES,
    REGISTRY,
    CompatTools,
    RunningEngine,
    assert_cleaned_up,
    run_program,
)

pytestmark = pytest.mark.integration


def test_python_sdk_tunnels(
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
            PIPELINES / "dagger_tunnels.py",
            f"{REGISTRY}/busybox:latest",
            nonce,
        ],
        cwd=workspace,
        engine=engine,
    )
    assert result.result_json() == {
        "tunnel_url": "http://127.0.0.1",
        "through_tunnel": nonce,
        "from_container": f"host says /{nonce}",
    }, result.describe()
    assert_cleaned_up(result)
