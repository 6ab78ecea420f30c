"""ImageStore against an in-process fake registry: auth flows, platforms, digests, errors."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from dirk.errors import (
    DigestMismatchError,
    ImageNotFoundError,
    PlatformNotFoundError,
    RegistryAuthError,
    RegistryUnreachableError,
    UnsupportedMediaTypeError,
)
from dirk.state import BlobStore, Database, StateLayout
from dirk.workers.images.manifest import (
    DOCKER_CONFIG,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_MANIFEST,
)
from dirk.workers.images.reference import ImageReference
from dirk.workers.images.registry import RegistryClient, is_loopback, using_registry_endpoints
from dirk.workers.images.store import ImageStore
from dirk.workers.images.unpack import LayerPathError
from dirk.workers.snapshots.layers import LayerStore

pytestmark = pytest.mark.anyio
HOST = "registry.test"
TOKEN_URL = "https://auth.test/token"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


async def _trickle(data: bytes) -> AsyncIterator[bytes]:
    """A blob served slowly: 64 KiB every 10 ms."""
    for i in range(0, len(data), 65536):
        await anyio.sleep(0.01)
        yield data[i : i + 65536]


class FakeRegistry:
    """A distribution-API registry in a MockTransport handler; records every request."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.auth: str | None = None  # None, "basic" or "bearer"
        self.users = {"alice": "s3cret"}
        self.anonymous_tokens = True
        self.tokens: set[str] = set()
        self.issued = 0
        self.requests: list[httpx.Request] = []
        self.corrupt: set[str] = set()
        self.slow: set[str] = set()

    # --- content ----------------------------------------------------------------------------

    def blob(self, data: bytes) -> str:
        digest = digest_of(data)
        self.blobs[digest] = data
        return digest

    def image(
        self,
        repo: str,
        tag: str | None,
        layers: list[dict[str, bytes]],
        *,
        arch: str = "amd64",
        docker: bool = False,
        config: dict[str, Any] | None = None,
    ) -> str:
        config_json = {
            "architecture": arch,
            "os": "linux",
            "config": config or {"Env": ["PATH=/bin"], "Cmd": ["sh"], "WorkingDir": "/w"},
            "rootfs": {"type": "layers", "diff_ids": []},
        }
        config_bytes = json.dumps(config_json).encode()
        layer_type = (
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
            if docker
            else "application/vnd.oci.image.layer.v1.tar+gzip"
        )
        descs = []
        for files in layers:
            blob = gzip.compress(layer_tar(files), mtime=0)
            descs.append({"mediaType": layer_type, "digest": self.blob(blob), "size": len(blob)})
        manifest = {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST,
            "config": {
                "mediaType": DOCKER_CONFIG if docker else OCI_CONFIG,
                "digest": self.blob(config_bytes),
                "size": len(config_bytes),
            },
            "layers": descs,
        }
        return self.put_manifest(repo, tag, manifest, manifest["mediaType"])

    def put_manifest(self, repo: str, tag: str | None, obj: dict[str, Any], media_type: str) -> str:
        body = json.dumps(obj).encode()
        digest = digest_of(body)
        self.manifests[(repo, digest)] = (body, media_type)
        if tag:
            self.manifests[(repo, tag)] = (body, media_type)
        return digest

    def index(self, repo: str, tag: str, entries: list[tuple[str, dict[str, str]]]) -> str:
        obj = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {"mediaType": OCI_MANIFEST, "digest": d, "size": 1, "platform": p}
                for d, p in entries
            ],
        }
        return self.put_manifest(repo, tag, obj, OCI_INDEX)

    # --- HTTP -------------------------------------------------------------------------------

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.host == "auth.test":
            return self.token(request)
        assert request.url.host == HOST
        assert request.url.scheme == "https", "non-loopback registries must use https"
        denied = self.check_auth(request)
        if denied is not None:
            return denied
        path = request.url.path
        assert path.startswith("/v2/")
        repo, _, rest = path[4:].rpartition("/")
        repo, _, kind = repo.rpartition("/")
        if kind == "tags" and rest == "list":
            tags = sorted(t for r, t in self.manifests if r == repo and ":" not in t)
            if tags:
                return httpx.Response(200, json={"name": repo, "tags": tags})
            return httpx.Response(404, json={"errors": [{"code": "NAME_UNKNOWN", "message": "x"}]})
        if kind == "manifests":
            if (repo, rest) not in self.manifests:
                known = any(r == repo for r, _ in self.manifests)
                code = "MANIFEST_UNKNOWN" if known else "NAME_UNKNOWN"
                return httpx.Response(404, json={"errors": [{"code": code, "message": "unknown"}]})
            body, media_type = self.manifests[(repo, rest)]
            headers = {"Content-Type": media_type, "Docker-Content-Digest": digest_of(body)}
            return httpx.Response(200, content=body, headers=headers)
        if kind == "blobs" and rest in self.blobs:
            data = self.blobs[rest]
            if rest in self.corrupt:
                data = data[:-1] + bytes([data[-1] ^ 1])
            if rest in self.slow:
                return httpx.Response(200, content=_trickle(data))
            return httpx.Response(200, content=data)
        return httpx.Response(404, json={"errors": [{"code": "BLOB_UNKNOWN", "message": "x"}]})

    def check_auth(self, request: httpx.Request) -> httpx.Response | None:
        header = request.headers.get("authorization", "")
        if self.auth == "basic":
            if header.startswith("Basic "):
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
                if self.users.get(user) == password:
                    return None
            return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="fake"'})
        if self.auth == "bearer":
            if header.startswith("Bearer ") and header[7:] in self.tokens:
                return None
            repo = request.url.path[4:].split("/manifests/")[0].split("/blobs/")[0]
            challenge = (
                f'Bearer realm="{TOKEN_URL}",service="{HOST}",scope="repository:{repo}:pull"'
            )
            return httpx.Response(401, headers={"WWW-Authenticate": challenge})
        return None

    def token(self, request: httpx.Request) -> httpx.Response:
        header = request.headers.get("authorization", "")
        user = None
        if header.startswith("Basic "):
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            if self.users.get(user) != password:
                return httpx.Response(401, json={"details": "bad credentials"})
        elif not self.anonymous_tokens:
            return httpx.Response(401, json={"details": "login required"})
        assert request.url.params["service"] == HOST
        assert request.url.params["scope"].startswith("repository:")
        self.issued += 1
        token = f"tok-{user}-{self.issued}"
        self.tokens.add(token)
        return httpx.Response(200, json={"token": token, "expires_in": 300})

    def paths(self) -> list[str]:
        return [r.url.path for r in self.requests if r.url.host == HOST]


@pytest.fixture
def fake() -> FakeRegistry:
    return FakeRegistry()


@pytest.fixture
def layout(tmp_path: Path) -> Iterator[StateLayout]:
    yield StateLayout(tmp_path / "state").ensure()


@pytest.fixture
def docker_config(tmp_path: Path) -> Path:
    return tmp_path / "docker" / "config.json"


def write_config(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


@pytest.fixture
async def store(
    fake: FakeRegistry, layout: StateLayout, docker_config: Path
) -> AsyncIterator[ImageStore]:
    db = Database(layout.db_path)
    s = ImageStore(
        BlobStore(layout.blobs, layout.tmp),
        LayerStore(layout, db),
        docker_config=docker_config,
        transport=httpx.MockTransport(fake.handler),
    )
    yield s
    await s.aclose()
    db.close()


# --- resolve + unpack ---------------------------------------------------------------------------


async def test_resolve_and_unpack_a_two_layer_image(
    fake: FakeRegistry, store: ImageStore, layout: StateLayout
) -> None:
    digest = fake.image("team/app", "v1", [{"etc/a": b"1", "bin/x": b"x"}, {"etc/b": b"2"}])
    image = await store.resolve(f"{HOST}/team/app:v1")
    assert image.manifest_digest == digest
    assert str(image.reference) == f"{HOST}/team/app:v1@{digest}"
    assert image.platform == "linux/amd64"
    assert image.config.env == ("PATH=/bin",) and image.config.cmd == ("sh",)
    assert image.config.workdir == "/w"
    assert len(image.layers) == 2
    accept = next(r for r in fake.requests if "/manifests/" in r.url.path).headers["accept"]
    for media_type in (OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST):
        assert media_type in accept
    assert not any("/blobs/" + layer.digest in fake.paths() for layer in image.layers)

    snapshot = await store.unpack(image)
    assert len(snapshot.layers) == 2
    bottom, top = (layout.layers / i for i in snapshot.layers)
    assert (bottom / "etc/a").read_bytes() == b"1" and (top / "etc/b").read_bytes() == b"2"
    for blob in (digest, image.config_digest, *(la.digest for la in image.layers)):
        assert store.blobs.has(blob), "manifest, config and compressed layers are kept"
    assert list(layout.tmp.iterdir()) == []


async def test_docker_schema2_media_types(fake: FakeRegistry, store: ImageStore) -> None:
    fake.image("lib/d", "1", [{"f": b"f"}], docker=True)
    image = await store.resolve(f"{HOST}/lib/d:1")
    assert image.layers[0].media_type.startswith("application/vnd.docker.")
    assert len((await store.unpack(image)).layers) == 1


async def test_index_selects_the_requested_platform(fake: FakeRegistry, store: ImageStore) -> None:
    amd = fake.image("multi", None, [{"arch": b"amd64"}])
    arm = fake.image("multi", None, [{"arch": b"arm64"}], arch="arm64")
    attestation = fake.image("multi", None, [{"att": b""}], arch="unknown")
    fake.index(
        "multi",
        "latest",
        [
            (amd, {"os": "linux", "architecture": "amd64"}),
            (arm, {"os": "linux", "architecture": "arm64", "variant": "v8"}),
            (attestation, {"os": "unknown", "architecture": "unknown"}),
        ],
    )
    assert (await store.resolve(f"{HOST}/multi")).manifest_digest == amd
    image = await store.resolve(f"{HOST}/multi", platform="linux/arm64")
    assert image.manifest_digest == arm and image.platform == "linux/arm64/v8"
    assert (await store.resolve(f"{HOST}/multi", "linux/aarch64/v8")).manifest_digest == arm
    with pytest.raises(PlatformNotFoundError) as info:
        await store.resolve(f"{HOST}/multi", platform="linux/s390x")
    message = str(info.value)
    assert "linux/s390x" in message and "linux/amd64, linux/arm64/v8" in message
    assert "unknown" not in message


async def test_single_platform_image_for_another_arch(
    fake: FakeRegistry, store: ImageStore
) -> None:
    fake.image("armonly", "1", [{"f": b""}], arch="arm64")
    with pytest.raises(PlatformNotFoundError, match="linux/arm64/v8"):
        await store.resolve(f"{HOST}/armonly:1")


async def test_pinned_reference_resolves_from_the_store(
    fake: FakeRegistry, store: ImageStore
) -> None:
    digest = fake.image("pin", "1", [{"f": b"f"}])
    first = await store.resolve(f"{HOST}/pin@{digest}")
    fake.requests.clear()
    again = await store.resolve(f"{HOST}/pin@{digest}")
    assert again == first and fake.requests == []


async def test_a_tag_resolved_again_asks_the_registry_but_rewrites_nothing(
    fake: FakeRegistry, store: ImageStore
) -> None:
    """A tag may move, so it is asked again every time; a manifest the store holds already
    is not written again (every cached pipeline resolves its base image)."""
    fake.image("tagged", "1", [{"f": b"f"}])
    first = await store.resolve(f"{HOST}/tagged:1")
    stored = store.blobs.path(first.manifest_digest)
    before = stored.stat()
    fake.requests.clear()
    again = await store.resolve(f"{HOST}/tagged:1")
    assert again == first
    assert any("/manifests/1" in path for path in fake.paths())
    after = stored.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


async def test_unknown_tag_and_repository(fake: FakeRegistry, store: ImageStore) -> None:
    fake.image("known", "1", [{"f": b"f"}])
    with pytest.raises(ImageNotFoundError) as info:
        await store.resolve(f"{HOST}/known:nope")
    assert "'nope'" in str(info.value) and HOST in str(info.value)
    assert "it has: 1" in str(info.value)
    with pytest.raises(ImageNotFoundError, match="no repository 'missing'"):
        await store.resolve(f"{HOST}/missing:1")


async def test_schema1_is_unsupported(fake: FakeRegistry, store: ImageStore) -> None:
    fake.put_manifest(
        "old",
        "1",
        {"schemaVersion": 1, "name": "old", "fsLayers": []},
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
    )
    with pytest.raises(UnsupportedMediaTypeError, match="schema 1"):
        await store.resolve(f"{HOST}/old:1")


# --- digests -------------------------------------------------------------------------------------


async def test_corrupt_layer_is_not_stored(
    fake: FakeRegistry, store: ImageStore, layout: StateLayout
) -> None:
    fake.image("bad", "1", [{"good": b"g"}, {"bad": os.urandom(1000)}])
    image = await store.resolve(f"{HOST}/bad:1")
    fake.corrupt.add(image.layers[1].digest)
    with pytest.raises(DigestMismatchError, match=image.layers[1].digest):
        await store.unpack(image)
    assert not store.blobs.has(image.layers[1].digest)
    assert store.layers.by_source(image.layers[1].digest) is None
    assert list(layout.tmp.iterdir()) == []
    assert len(list(layout.layers.iterdir())) <= 1, "only the good layer may have been kept"


async def test_corrupt_config_or_manifest_is_not_stored(
    fake: FakeRegistry, store: ImageStore
) -> None:
    digest = fake.image("cfg", "1", [{"f": b"f"}])
    config_digest = json.loads(fake.manifests[("cfg", digest)][0])["config"]["digest"]
    fake.corrupt.add(config_digest)
    with pytest.raises(DigestMismatchError):
        await store.resolve(f"{HOST}/cfg:1")
    assert not store.blobs.has(config_digest)
    wrong = "sha256:" + "0" * 64
    fake.manifests[("cfg", wrong)] = fake.manifests[("cfg", digest)]
    with pytest.raises(DigestMismatchError):
        await store.resolve(f"{HOST}/cfg@{wrong}")
    assert not store.blobs.has(wrong)


async def test_truncated_layer_is_a_digest_error(
    fake: FakeRegistry, store: ImageStore, layout: StateLayout
) -> None:
    fake.image("short", "1", [{"big": os.urandom(3_000_000)}])
    image = await store.resolve(f"{HOST}/short:1")
    digest = image.layers[0].digest
    fake.blobs[digest] = fake.blobs[digest][: len(fake.blobs[digest]) // 2]
    with pytest.raises(DigestMismatchError):
        await store.unpack(image)
    assert not store.blobs.has(digest) and list(layout.layers.iterdir()) == []
    assert list(layout.tmp.iterdir()) == []


async def test_malicious_layer_fails_while_downloading(
    fake: FakeRegistry, store: ImageStore, layout: StateLayout
) -> None:
    fake.image("evil", "1", [{"../escape": b"x", "pad": os.urandom(3_000_000)}])
    image = await store.resolve(f"{HOST}/evil:1")
    with pytest.raises(LayerPathError, match="refusing"):
        await store.unpack(image)
    assert list(layout.layers.iterdir()) == [] and list(layout.tmp.iterdir()) == []
    assert not (layout.root / "escape").exists() and not (layout.layers / "escape").exists()


async def test_stored_blob_is_unpacked_without_downloading(
    fake: FakeRegistry, store: ImageStore, layout: StateLayout
) -> None:
    fake.image("kept", "1", [{"f": b"kept"}])
    image = await store.resolve(f"{HOST}/kept:1")
    (first,) = (await store.unpack(image)).layers
    shutil.rmtree(layout.layers / first)  # as if the layer had been garbage-collected
    fake.requests.clear()
    (second,) = (await store.unpack(image)).layers
    assert second != first and (layout.layers / second / "f").read_bytes() == b"kept"
    assert fake.requests == []


async def test_cancelled_pull_leaves_nothing_behind(
    fake: FakeRegistry, store: ImageStore, layout: StateLayout
) -> None:
    fake.image("slow", "1", [{"big": os.urandom(4_000_000)}])
    image = await store.resolve(f"{HOST}/slow:1")
    fake.slow.add(image.layers[0].digest)
    with anyio.move_on_after(0.2) as scope:
        await store.unpack(image)
    assert scope.cancelled_caught
    assert list(layout.tmp.iterdir()) == [] and list(layout.layers.iterdir()) == []
    assert not store.blobs.has(image.layers[0].digest)
    fake.slow.clear()
    snapshot = await store.unpack(image)  # the layer's lock was released
    assert (layout.layers / snapshot.layers[0] / "big").stat().st_size == 4_000_000


# --- layer sharing -------------------------------------------------------------------------------


async def test_layers_are_downloaded_and_unpacked_once(
    fake: FakeRegistry, store: ImageStore, layout: StateLayout
) -> None:
    shared = {"shared": b"s" * 10_000}
    fake.image("one", "1", [shared, {"one": b"1"}])
    fake.image("two", "1", [shared, {"two": b"2"}])
    one = await store.resolve(f"{HOST}/one:1")
    two = await store.resolve(f"{HOST}/two:1")
    results: list[Any] = [None] * 4

    async def pull(i: int, image: Any) -> None:
        results[i] = await store.unpack(image)

    async with anyio.create_task_group() as tg:
        for i, image in enumerate([one, two, one, two]):
            tg.start_soon(pull, i, image)
    assert results[0] == results[2] and results[1] == results[3]
    assert results[0].layers[0] == results[1].layers[0]
    assert len(list(layout.layers.iterdir())) == 3
    blob_gets = [p for p in fake.paths() if "/blobs/" in p and p.endswith(one.layers[0].digest)]
    assert len(blob_gets) == 1


async def test_a_layer_repeated_in_one_image_is_mounted_once(
    fake: FakeRegistry, store: ImageStore
) -> None:
    fake.image("rep", "1", [{"a": b"a"}, {"b": b"b"}, {"a": b"a"}])
    snapshot = await store.unpack(await store.resolve(f"{HOST}/rep:1"))
    assert len(snapshot.layers) == 2
    assert len(set(snapshot.layers)) == 2


# --- authentication ------------------------------------------------------------------------------


async def test_anonymous_bearer_token_flow(fake: FakeRegistry, store: ImageStore) -> None:
    fake.auth = "bearer"
    fake.image("pub", "1", [{"f": b"f"}])
    image = await store.resolve(f"{HOST}/pub:1")
    await store.unpack(image)
    token_requests = [r for r in fake.requests if r.url.host == "auth.test"]
    assert len(token_requests) == 1, "the token is reused for the config and the layers"
    assert token_requests[0].url.params["scope"] == "repository:pub:pull"
    assert "authorization" not in token_requests[0].headers


async def test_bearer_with_credentials_from_docker_config(
    fake: FakeRegistry, store: ImageStore, docker_config: Path
) -> None:
    fake.auth = "bearer"
    fake.anonymous_tokens = False
    fake.image("private", "1", [{"f": b"f"}])
    auth = base64.b64encode(b"alice:s3cret").decode()
    write_config(docker_config, {"auths": {f"https://{HOST}/v1/": {"auth": auth}}})
    await store.unpack(await store.resolve(f"{HOST}/private:1"))
    assert any(t.startswith("tok-alice-") for t in fake.tokens)


async def test_bearer_without_credentials_says_how_to_log_in(
    fake: FakeRegistry, store: ImageStore, docker_config: Path
) -> None:
    fake.auth = "bearer"
    fake.anonymous_tokens = False
    fake.image("private", "1", [{"f": b"f"}])
    with pytest.raises(RegistryAuthError) as info:
        await store.resolve(f"{HOST}/private:1")
    assert str(docker_config) in str(info.value) and "docker login" in str(info.value)


async def test_basic_auth_with_username_password(
    fake: FakeRegistry, store: ImageStore, docker_config: Path
) -> None:
    fake.auth = "basic"
    fake.image("b", "1", [{"f": b"f"}])
    write_config(docker_config, {"auths": {HOST: {"username": "alice", "password": "s3cret"}}})
    await store.unpack(await store.resolve(f"{HOST}/b:1"))


@pytest.mark.parametrize("scheme", ["basic", "bearer"])
async def test_wrong_password_is_an_auth_error(
    fake: FakeRegistry, store: ImageStore, docker_config: Path, scheme: str
) -> None:
    fake.auth = scheme
    fake.image("b", "1", [{"f": b"f"}])
    write_config(docker_config, {"auths": {HOST: {"username": "alice", "password": "wrong"}}})
    with pytest.raises(RegistryAuthError, match="'alice'"):
        await store.resolve(f"{HOST}/b:1")


async def test_credential_helper_is_named_when_no_static_credentials(
    fake: FakeRegistry, store: ImageStore, docker_config: Path
) -> None:
    fake.auth = "basic"
    fake.image("b", "1", [{"f": b"f"}])
    write_config(docker_config, {"auths": {}, "credsStore": "desktop"})
    with pytest.raises(RegistryAuthError, match="docker-credential-desktop"):
        await store.resolve(f"{HOST}/b:1")


async def test_layers_asking_for_credentials_at_once_log_in_once(
    fake: FakeRegistry, store: ImageStore
) -> None:
    fake.auth = "bearer"
    layers = [{f"f{i}": b"x" * 100_000} for i in range(4)]
    fake.image("many", "1", layers)
    image = await store.resolve(f"{HOST}/many:1")
    fake.tokens.clear()  # the token expired: every layer download is refused at once
    fake.requests.clear()
    await store.unpack(image)
    assert len([r for r in fake.requests if r.url.host == "auth.test"]) == 1


async def test_basic_auth_for_layers_asking_at_once(
    fake: FakeRegistry, layout: StateLayout, store: ImageStore, docker_config: Path
) -> None:
    fake.auth = "basic"
    layers = [{f"f{i}": b"x" * 100_000} for i in range(4)]
    digest = fake.image("many", "1", layers)
    write_config(docker_config, {"auths": {HOST: {"username": "alice", "password": "s3cret"}}})
    await store.resolve(f"{HOST}/many@{digest}")
    # Another engine run: the pinned image resolves from the store, so the first requests that
    # meet the registry's challenge are the layer downloads, all at once.
    db = Database(layout.db_path)
    again = ImageStore(
        BlobStore(layout.blobs, layout.tmp),
        LayerStore(layout, db),
        docker_config=docker_config,
        transport=httpx.MockTransport(fake.handler),
    )
    try:
        snapshot = await again.unpack(await again.resolve(f"{HOST}/many@{digest}"))
    finally:
        await again.aclose()
        db.close()
    assert len(snapshot.layers) == 4


# --- transport -----------------------------------------------------------------------------------


async def test_connection_errors_are_unreachable_errors(
    layout: StateLayout, tmp_path: Path
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    db = Database(layout.db_path)
    s = ImageStore(
        BlobStore(layout.blobs, layout.tmp),
        LayerStore(layout, db),
        docker_config=tmp_path / "none.json",
        transport=httpx.MockTransport(refuse),
    )
    with pytest.raises(RegistryUnreachableError) as info:
        await s.resolve("gone.example:5000/app:1")
    assert "gone.example:5000" in str(info.value) and "running" in str(info.value)
    await s.aclose()


def test_a_registry_reached_at_a_service_is_plain_http_to_its_address(tmp_path: Path) -> None:
    client = RegistryClient(tmp_path / "c.json")
    ref = ImageReference.parse("myreg:5000/app:1")
    with using_registry_endpoints({"myreg:5000": "10.89.0.9:5000"}):
        assert client.url(ref, "manifests/1") == "http://10.89.0.9:5000/v2/app/manifests/1"
        direct = client.client_for("http://10.89.0.9:5000/v2/")
        assert direct is client.client_for("http://127.0.0.1:5000/v2/")  # never proxied
        assert client.base_url("ghcr.io") == "https://ghcr.io"
    assert client.base_url("myreg:5000") == "https://myreg:5000"


def test_plain_http_only_for_loopback_or_insecure(tmp_path: Path) -> None:
    client = RegistryClient(tmp_path / "c.json", insecure_registries=["lab.internal:5000"])
    assert client.base_url("127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert client.base_url("127.9.9.9") == "http://127.9.9.9"
    assert client.base_url("localhost:5000") == "http://localhost:5000"
    assert client.base_url("[::1]:5000") == "http://[::1]:5000"
    assert client.base_url("lab.internal:5000") == "http://lab.internal:5000"
    assert client.base_url("lab.internal") == "https://lab.internal"
    assert client.base_url("ghcr.io") == "https://ghcr.io"
    assert client.base_url("10.0.0.1:5000") == "https://10.0.0.1:5000"
    assert not is_loopback("127.0.0.1.example.com")
