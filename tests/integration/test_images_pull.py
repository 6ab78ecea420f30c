"""Pulling the test images from the real local registry (`make images`), and from a second,
password-protected registry started here."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import stat
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import bcrypt
import httpx
import pytest

from dirk.errors import ImageNotFoundError, RegistryAuthError, RegistryUnreachableError
from dirk.state import BlobStore, Database, StateLayout
from dirk.workers.images.store import ImageStore
from dirk.workers.snapshots.layers import LayerStore, Snapshot

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


@pytest.fixture
def layout(tmp_path: Path) -> StateLayout:
    return StateLayout(tmp_path / "state").ensure()


@contextlib.asynccontextmanager
async def open_store(layout: StateLayout, docker_config: Path) -> AsyncIterator[ImageStore]:
    db = Database(layout.db_path)
    store = ImageStore(
        BlobStore(layout.blobs, layout.tmp), LayerStore(layout, db), docker_config=docker_config
    )
    try:
        yield store
    finally:
        await store.aclose()
        db.close()


@pytest.fixture
async def store(layout: StateLayout, tmp_path: Path) -> AsyncIterator[ImageStore]:
    async with open_store(layout, tmp_path / "no-docker-config.json") as s:
        yield s


def find(layout: StateLayout, snapshot: Snapshot, path: str) -> Path:
    """`path` as the merged filesystem shows it: from the topmost layer that has it."""
    for layer in reversed(snapshot.layers):
        candidate = layout.layers / layer / path
        if os.path.lexists(candidate):
            return candidate
    raise AssertionError(f"{path} is in no layer of {snapshot}")


async def test_busybox_resolves_and_unpacks(
    store: ImageStore, layout: StateLayout, busybox_ref: str
) -> None:
    image = await store.resolve(busybox_ref)
    assert image.reference.digest == image.manifest_digest
    assert image.platform == "linux/amd64"
    assert any(e.startswith("PATH=") for e in image.config.env)
    snapshot = await store.unpack(image)
    assert len(snapshot.layers) == len(image.layers)
    busybox = find(layout, snapshot, "bin/busybox")
    assert busybox.stat().st_mode & stat.S_IXUSR and busybox.stat().st_size > 500_000
    assert subprocess.run([busybox, "true"], check=False).returncode == 0
    assert list(layout.tmp.iterdir()) == []


async def test_python_resolves_and_unpacks(
    store: ImageStore, layout: StateLayout, python_ref: str
) -> None:
    image = await store.resolve(python_ref)
    snapshot = await store.unpack(image)
    python = find(layout, snapshot, "usr/bin/python3")
    assert python.is_symlink()
    real = find(layout, snapshot, "usr/bin/" + os.readlink(python))
    assert real.stat().st_mode & stat.S_IXUSR
    # setuid survives, ownership too
    su = find(layout, snapshot, "usr/bin/su")
    assert su.stat().st_mode & stat.S_ISUID and su.stat().st_uid == 0
    for layer in image.layers:
        assert store.blobs.has(layer.digest), "compressed layers are kept for a later push"


async def test_second_pull_reuses_layers(
    layout: StateLayout, tmp_path: Path, python_ref: str, busybox_ref: str
) -> None:
    config = tmp_path / "none.json"
    async with open_store(layout, config) as store:
        images = [await store.resolve(python_ref), await store.resolve(busybox_ref)]
        results: list[Snapshot | None] = [None] * 4

        async def pull(i: int) -> None:
            results[i] = await store.unpack(images[i % 2])

        async with anyio.create_task_group() as tg:  # the same image twice, concurrently
            for i in range(4):
                tg.start_soon(pull, i)
        assert results[0] == results[2] and results[1] == results[3]
    dirs = sorted(p.name for p in layout.layers.iterdir())
    assert len(dirs) == sum(len(i.layers) for i in images)
    async with open_store(layout, config) as store:  # a new engine on the same state
        start = time.perf_counter()
        again = await store.unpack(await store.resolve(python_ref))
        elapsed = time.perf_counter() - start
    assert again == results[0]
    assert sorted(p.name for p in layout.layers.iterdir()) == dirs
    assert elapsed < 1.0, f"a pull of layers already unpacked took {elapsed:.2f} s"


async def test_unknown_tag_is_not_found(store: ImageStore, registry: str) -> None:
    with pytest.raises(ImageNotFoundError) as info:
        await store.resolve(f"{registry}/busybox:no-such-tag")
    assert "no-such-tag" in str(info.value) and registry in str(info.value)
    assert "latest" in str(info.value), "the message lists the tags there are"
    with pytest.raises(ImageNotFoundError, match="no repository 'no-such-repo'"):
        await store.resolve(f"{registry}/no-such-repo:latest")


async def test_nothing_listening_is_unreachable(store: ImageStore) -> None:
    with pytest.raises(RegistryUnreachableError) as info:
        await store.resolve("127.0.0.1:5999/busybox:latest")
    assert "127.0.0.1:5999" in str(info.value) and "running" in str(info.value)


# --- a password-protected registry ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory: pytest.TempPathFactory, registry: str) -> Iterator[str]:
    """A second docker-registry with htpasswd (basic) auth, holding busybox; user alice."""
    root = tmp_path_factory.mktemp("auth-registry")
    port = free_port()
    address = f"127.0.0.1:{port}"
    hashed = bcrypt.hashpw(b"wonderland", bcrypt.gensalt(rounds=5)).decode()
    (root / "htpasswd").write_text(f"alice:{hashed}\n")
    (root / "config.yml").write_text(
        f"""version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}/data
http:
  addr: {address}
  secret: dirk-test
auth:
  htpasswd:
    realm: dirk-test
    path: {root}/htpasswd
"""
    )
    log = open(root / "registry.log", "wb")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(
        ["docker-registry", "serve", str(root / "config.yml")], stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                status = httpx.get(f"http://{address}/v2/", timeout=1, trust_env=False).status_code
                if status == 401:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"the htpasswd registry did not start: {(root / 'registry.log').read_text()}"
                )
            time.sleep(0.05)
        copy = subprocess.run(
            [
                "skopeo", "copy", "--quiet",
                "--src-tls-verify=false", "--dest-tls-verify=false",
                "--dest-creds", "alice:wonderland",
                f"docker://{registry}/busybox:latest", f"docker://{address}/busybox:latest",
            ],
            capture_output=True,
            text=True,
            check=False,
        )  # fmt: skip
        assert copy.returncode == 0, f"skopeo could not push to {address}: {copy.stderr}"
        yield address
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def docker_config(path: Path, registry: str, user: str, password: str) -> Path:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {registry: {"auth": token}}}))
    return path


async def test_basic_auth_registry_with_docker_config(
    auth_registry: str, layout: StateLayout, tmp_path: Path
) -> None:
    config = docker_config(tmp_path / "config.json", auth_registry, "alice", "wonderland")
    async with open_store(layout, config) as store:
        image = await store.resolve(f"{auth_registry}/busybox:latest")
        snapshot = await store.unpack(image)
    assert find(layout, snapshot, "bin/busybox").stat().st_size > 500_000


async def test_basic_auth_registry_without_credentials(
    auth_registry: str, layout: StateLayout, tmp_path: Path
) -> None:
    async with open_store(layout, tmp_path / "missing.json") as store:
        with pytest.raises(RegistryAuthError) as info:
            await store.resolve(f"{auth_registry}/busybox:latest")
    assert auth_registry in str(info.value) and "docker login" in str(info.value)


async def test_basic_auth_registry_wrong_password(
    auth_registry: str, layout: StateLayout, tmp_path: Path
) -> None:
    config = docker_config(tmp_path / "config.json", auth_registry, "alice", "wrong")
    async with open_store(layout, config) as store:
        with pytest.raises(RegistryAuthError, match="refused the credentials of user 'alice'"):
            await store.resolve(f"{auth_registry}/busybox:latest")
