"""The released Dagger SDKs (Python and TypeScript) publish, export and import images through
`dirk run`; skopeo reads what they wrote."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

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


def skopeo_inspect(*args: str) -> Any:
    done = subprocess.run(
        ["skopeo", "inspect", *args], capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_python_sdk_publishes_exports_and_imports(
    request: pytest.FixtureRequest,
    compat_tools: CompatTools,
    engine: RunningEngine,
    python_image: str,
    workspace: Path,
    nonce: str,
) -> None:
    address = f"{REGISTRY}/images-out-compat/app:{nonce}"
    result = run_program(
        request,
        [
            compat_tools.dirk,
            "run",
            "--",
            compat_tools.python,
            PIPELINES / "dagger_images.py",
            python_image,
            address,
            nonce,
        ],
        cwd=workspace,
        engine=engine,
    )
    got = result.result_json()
    assert re.fullmatch(re.escape(address) + r"@sha256:[0-9a-f]{64}", str(got["publish"])), got
    assert got["export"] == str(workspace / "app.tar"), got
    assert got["imported_stdout"] == nonce + "\n", got
    assert got["imported_env"] == "yes", got
    assert got["pulled_label"] == nonce, got

    config = skopeo_inspect("--config", f"oci-archive:{workspace / 'app.tar'}")
    assert "COMPAT=yes" in config["config"]["Env"]
    docker = skopeo_inspect(f"docker-archive:{workspace / 'docker.tar'}")
    assert docker["Labels"]["org.example.nonce"] == nonce
    zstd = skopeo_inspect("--raw", f"oci-archive:{workspace / 'zstd.tar'}")
    zstd_layer = "application/vnd.oci.image.layer.v1.tar+zstd"
    assert {layer["mediaType"] for layer in zstd["layers"]} == {zstd_layer}
    remote = skopeo_inspect("--tls-verify=false", f"docker://{address}")
    assert remote["Digest"] == str(got["publish"]).rsplit("@", 1)[1]
    assert_cleaned_up(result)


def test_typescript_sdk_publishes_an_index_exports_and_imports(
    request: pytest.FixtureRequest,
    compat_tools: CompatTools,
    engine: RunningEngine,
    python_image: str,
    workspace: Path,
    nonce: str,
) -> None:
    address = f"{REGISTRY}/images-out-compat/ts:{nonce}"
    (workspace / "node_modules").symlink_to(compat_tools.node_modules, target_is_directory=True)
    pipeline = shutil.copy(PIPELINES / "dagger_images.mjs", workspace / "images.mjs")
    result = run_program(
        request,
        [compat_tools.dirk, "run", "--", compat_tools.node, pipeline, python_image, address, nonce],
        cwd=workspace,
        engine=engine,
    )
    got = result.result_json()
    assert re.fullmatch(re.escape(address) + r"@sha256:[0-9a-f]{64}", str(got["publish"])), got
    assert got["export_docker"] == str(workspace / "docker.tar"), got
    assert got["imported_stdout"] == nonce + "\n", got

    index = skopeo_inspect("--tls-verify=false", "--raw", f"docker://{address}")
    platforms = sorted(m["platform"]["architecture"] for m in index["manifests"])
    assert platforms == ["amd64", "arm64"]
    docker = skopeo_inspect(f"docker-archive:{workspace / 'docker.tar'}")
    assert "COMPAT=typescript" in docker["Env"]
    assert_cleaned_up(result)
