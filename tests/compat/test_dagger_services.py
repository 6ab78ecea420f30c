"""The released Dagger SDKs (Python and TypeScript) use a service through `dirk run`: a busybox
httpd bound by alias and fetched by a client container; nothing of it is left afterwards."""

from __future__ import annotations

import re
import shutil
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
from tests.integration.leaks import LeakWatch

pytestmark = pytest.mark.integration

BUSYBOX = f"{REGISTRY}/busybox:latest"
ENDPOINT = r"http://[a-z0-9][a-z0-9.-]*:8080"


@pytest.fixture
def leaks(no_leaks: LeakWatch, engine: RunningEngine) -> LeakWatch:
    no_leaks.watch(engine.state_dir)
    return no_leaks


def test_python_sdk_binds_a_service_and_a_client_fetches_from_it(
    request: pytest.FixtureRequest,
    compat_tools: CompatTools,
    engine: RunningEngine,
    leaks: LeakWatch,
    python_image: str,
    workspace: Path,
    nonce: str,
) -> None:
    program = [compat_tools.python, PIPELINES / "dagger_services.py", BUSYBOX, nonce]
    result = run_program(
        request, [compat_tools.dirk, "run", "--", *program], cwd=workspace, engine=engine
    )
    got = result.result_json()
    assert got["fetched"] == f"hello {nonce}\n", got
    assert got["ports"] == [8080], got
    assert re.fullmatch(ENDPOINT, str(got["endpoint"])), got
    assert re.fullmatch(r"[a-z0-9][a-z0-9.-]*:8080", str(got["started_endpoint"])), got
    assert_cleaned_up(result)


def test_typescript_sdk_binds_a_service_and_a_client_fetches_from_it(
    request: pytest.FixtureRequest,
    compat_tools: CompatTools,
    engine: RunningEngine,
    leaks: LeakWatch,
    python_image: str,
    workspace: Path,
    nonce: str,
) -> None:
    (workspace / "node_modules").symlink_to(compat_tools.node_modules, target_is_directory=True)
    pipeline = shutil.copy(PIPELINES / "dagger_services.mjs", workspace / "services.mjs")
    result = run_program(
        request,
        [compat_tools.dirk, "run", "--", compat_tools.node, pipeline, BUSYBOX, nonce],
        cwd=workspace,
        engine=engine,
    )
    got = result.result_json()
    assert got["fetched"] == f"hello {nonce}\n", got
    assert got["ports"] == [8080], got
    assert re.fullmatch(ENDPOINT, str(got["endpoint"])), got
    assert_cleaned_up(result)
