"""Shared fixtures of the integration tests: the local registry and the test images in it.

`make images` starts the registry (scripts/registry.sh) and pushes the images
(scripts/build_test_images.py); a test that needs them fails, never skips, when they are missing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from dirk.engine import Engine

REGISTRY = "127.0.0.1:5000"
TEST_IMAGES = (("busybox", "latest"), ("python", "3.11"))
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
    """host:port of the local plain-HTTP registry, once it answers and holds both test images."""
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


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    """A started engine on a state directory of its own."""
    async with Engine(tmp_path / "state") as eng:
        yield eng
