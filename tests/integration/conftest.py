"""Shared fixtures of the integration tests: the local registry and the test images in it, and
an executor (crun and runc) with an overlay root over a busybox tree for the executor tests.

`make images` starts the registry (scripts/registry.sh) and pushes the images
(scripts/build_test_images.py); a test that needs them fails, never skips, when they are missing.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from dirk.engine import EngineCore
from dirk.state.layout import StateLayout
from dirk.workers.executor.busybox import make_busybox_rootfs
from dirk.workers.executor.executor import Executor
from tests.integration.auth_registry import auth_registry
from tests.integration.docker_daemon import dockerd
from tests.integration.leaks import no_leaks, pytest_runtest_teardown

# The leak check's fixture and its hook; a second registry with password auth; a private
# Docker daemon.
__all__ = ["auth_registry", "dockerd", "no_leaks", "pytest_runtest_teardown"]

REGISTRY = "127.0.0.1:5000"
TEST_IMAGES = (
    ("busybox", "latest"),
    ("busybox", "multiarch"),
    ("python", "3.11"),
    ("postgres", "15"),
    ("registry", "2"),
)
MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


@pytest.fixture(scope="session")
def registry() -> str:
    """host:port of the local plain-HTTP registry, once it answers and holds the test images."""
    with httpx.Client(base_url=f"http://{REGISTRY}", trust_env=False, timeout=5) as client:
        try:
            client.get("/v2/").raise_for_status()
        except httpx.HTTPError as error:
            pytest.fail(
                f"the local registry {REGISTRY} does not answer /v2/ ({error}): "
                "run `make images` first",
                pytrace=False,
            )
        for name, tag in TEST_IMAGES:
            response = client.get(
                f"/v2/{name}/manifests/{tag}", headers={"Accept": MANIFEST_ACCEPT}
            )
            if response.status_code != 200:
                pytest.fail(
                    f"{REGISTRY}/{name}:{tag} is missing from the local registry "
                    f"(HTTP {response.status_code}): run `make images` first",
                    pytrace=False,
                )
    return REGISTRY


@pytest.fixture(scope="session")
def busybox_ref(registry: str) -> str:
    return f"{registry}/busybox:latest"


@pytest.fixture(scope="session")
def python_ref(registry: str) -> str:
    return f"{registry}/python:3.11"


@pytest.fixture(scope="session")
def postgres_ref(registry: str) -> str:
    """PostgreSQL 15 with the official image's entrypoint variables (POSTGRES_PASSWORD or
    POSTGRES_HOST_AUTH_METHOD=trust, POSTGRES_USER, POSTGRES_DB), psql, EXPOSE 5432."""
    return f"{registry}/postgres:15"


@pytest.fixture(scope="session")
def registry_image_ref(registry: str) -> str:
    """A distribution registry (Debian's docker-registry) serving plain HTTP on :5000 without
    auth, with the official image's command: for tests that run a registry as a service."""
    return f"{registry}/registry:2"


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[EngineCore]:
    """A started engine on a state directory of its own."""
    async with EngineCore(tmp_path / "state") as eng:
        yield eng


# --- the executor on its own ----------------------------------------------------------------


@pytest.fixture(scope="session")
def busybox_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert os.geteuid() == 0, "containers need root: run the integration tests as root"
    return make_busybox_rootfs(tmp_path_factory.mktemp("busybox") / "tree")


@pytest.fixture
def overlay_root(busybox_tree: Path, tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(merged, upper) of an overlay over the busybox tree, unmounted afterwards."""
    upper, work, merged = (tmp_path / n for n in ("upper", "work", "merged"))
    for d in (upper, work, merged):
        d.mkdir()
    options = f"lowerdir={busybox_tree},upperdir={upper},workdir={work}"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, str(merged)], check=True)
    try:
        yield merged, upper
    finally:
        subprocess.run(["umount", "--lazy", str(merged)], check=True)


@pytest.fixture
def rootfs(overlay_root: tuple[Path, Path]) -> Path:
    return overlay_root[0]


@pytest.fixture(params=["crun", "runc"])
def runtime(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def executor(runtime: str, tmp_path: Path) -> AsyncIterator[Executor]:
    ex = Executor(StateLayout(tmp_path / "state").ensure(), runtime)
    await ex.start()
    assert ex.runtime == runtime
    try:
        yield ex
    finally:
        await ex.aclose()
