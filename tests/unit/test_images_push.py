"""Pushing an image to a distribution registry (in a MockTransport): what is sent, in what
order, and how auth and blob reuse (HEAD, cross-repository mount) cut what goes over the wire."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import uuid
from pathlib import Path

import httpx
import pytest

from dirk.errors import InvalidArgumentError, RegistryAuthError
from dirk.state.blobs import BlobStore
from dirk.state.db import Database
from dirk.workers.images import push as push_module
from dirk.workers.images.auth import Credentials
from dirk.workers.images.image_out import BuiltImage, BuiltManifest, Descriptor
from dirk.workers.images.manifest import OCI_CONFIG, OCI_MANIFEST
from dirk.workers.images.push import push_image
from dirk.workers.images.registry import RegistryClient
from dirk.workers.images.retry import RetryPolicy

pytestmark = pytest.mark.anyio
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


class FakeRegistry:
    """Blobs per repository, uploads in progress, manifests; Bearer auth for user alice."""

    def __init__(self) -> None:
        self.blobs: dict[str, dict[str, bytes]] = {}
        self.uploads: dict[str, bytearray] = {}
        self.manifests: dict[tuple[str, str], tuple[str, bytes]] = {}
        self.requests: list[tuple[str, str]] = []
        self.token_scopes: list[str] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.host == "auth.test":
            creds = request.headers.get("authorization", "")
            if creds != "Basic " + base64.b64encode(b"alice:pw").decode():
                return httpx.Response(401)
            self.token_scopes.append(url.params.get("scope", ""))
            return httpx.Response(200, json={"token": "tok"})
        path = url.path
        repo = path.removeprefix("/v2/").split("/blobs/")[0].split("/manifests/")[0]
        if request.headers.get("authorization") != "Bearer tok":
            scope = f"repository:{repo}:pull,push"
            challenge = f'Bearer realm="http://auth.test/token",service="reg",scope="{scope}"'
            return httpx.Response(401, headers={"WWW-Authenticate": challenge})
        self.requests.append(
            (request.method, path + ("?" + url.query.decode() if url.query else ""))
        )
        store = self.blobs.setdefault(repo, {})
        if "/blobs/uploads/" in path:
            return self._upload(request, repo, store)
        if "/blobs/" in path:
            digest = path.rsplit("/", 1)[1]
            return httpx.Response(200 if digest in store else 404)
        ref = path.rsplit("/", 1)[1]
        body = request.read()
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        self.manifests[(repo, ref)] = (request.headers["content-type"], body)
        return httpx.Response(201, headers={"Docker-Content-Digest": digest})

    def _upload(self, request: httpx.Request, repo: str, store: dict[str, bytes]) -> httpx.Response:
        params = request.url.params
        if request.method == "POST":
            source = self.blobs.get(params.get("from", ""), {})
            if "mount" in params and params["mount"] in source:
                store[params["mount"]] = source[params["mount"]]
                return httpx.Response(201)
            upload = uuid.uuid4().hex
            self.uploads[upload] = bytearray()
            return httpx.Response(202, headers={"Location": f"/v2/{repo}/blobs/uploads/{upload}"})
        upload = request.url.path.rsplit("/", 1)[1]
        data = self.uploads[upload]
        body = request.read()
        if request.method == "PATCH":
            start = int(request.headers["content-range"].split("-")[0])
            assert start == len(data), "chunks must follow each other"
            data.extend(body)
            return httpx.Response(
                202, headers={"Location": f"/v2/{repo}/blobs/uploads/{upload}?_state=x"}
            )
        data.extend(body)
        digest = params["digest"]
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            return httpx.Response(400, json={"errors": [{"code": "DIGEST_INVALID"}]})
        store[digest] = bytes(data)
        return httpx.Response(201)


def image_of(blobs: BlobStore, layers: list[bytes]) -> BuiltImage:
    descs = tuple(Descriptor(LAYER, blobs.put_bytes(data), len(data)) for data in layers)
    config = json.dumps({"rootfs": {"diff_ids": []}}).encode()
    config_desc = Descriptor(OCI_CONFIG, blobs.put_bytes(config), len(config))
    manifest = json.dumps(
        {"config": config_desc.to_json(), "layers": [d.to_json() for d in descs]}
    ).encode()
    root = Descriptor(OCI_MANIFEST, blobs.put_bytes(manifest), len(manifest))
    return BuiltImage(root, (BuiltManifest(root, config_desc, descs, ()),), "oci")


@pytest.fixture
def env(tmp_path: Path) -> tuple[FakeRegistry, RegistryClient, BlobStore, Database]:
    fake = FakeRegistry()
    config = tmp_path / "config.json"
    auth = base64.b64encode(b"alice:pw").decode()
    config.write_text(json.dumps({"auths": {"reg.test": {"auth": auth}}}))
    client = RegistryClient(
        config,
        transport=httpx.MockTransport(fake.handler),
        retry=RetryPolicy(attempts=1, first_delay=0, max_delay=0),
    )
    blobs = BlobStore(tmp_path / "blobs", tmp_path / "tmp")
    return fake, client, blobs, Database(tmp_path / "db.sqlite")


async def test_push_uploads_small_and_chunked_blobs_then_the_manifest(
    env: tuple[FakeRegistry, RegistryClient, BlobStore, Database],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake, client, blobs, db = env
    monkeypatch.setattr(push_module, "MONOLITHIC_LIMIT", 1000)
    monkeypatch.setattr(push_module, "CHUNK_SIZE", 1024)
    big, small = os.urandom(3000), os.urandom(100)
    image = image_of(blobs, [big, small])
    result = await push_image(client, blobs, db, "reg.test/team/app:v1", image)
    assert result.address == f"reg.test/team/app:v1@{image.root.digest}"
    assert result.stats.uploaded == 3 and result.stats.existing == 0
    stored = fake.blobs["team/app"]
    assert stored[image.manifests[0].layers[0].digest] == big
    assert stored[image.manifests[0].layers[1].digest] == small
    patches = [p for m, p in fake.requests if m == "PATCH"]
    assert len(patches) == 3  # 3000 bytes in chunks of 1024
    assert fake.requests[-1] == ("PUT", "/v2/team/app/manifests/v1")
    assert fake.manifests[("team/app", "v1")][0] == OCI_MANIFEST
    # Logged in once, from Docker's config, for the scope the registry named.
    assert fake.token_scopes == ["repository:team/app:pull,push"]

    fake.requests.clear()
    again = await push_image(client, blobs, db, "reg.test/team/app:v1", image)
    assert (again.stats.uploaded, again.stats.existing) == (0, 3)
    assert [m for m, _ in fake.requests] == ["HEAD", "HEAD", "HEAD", "PUT"]


async def test_a_blob_in_a_sibling_repository_is_mounted_not_sent(
    env: tuple[FakeRegistry, RegistryClient, BlobStore, Database],
) -> None:
    fake, client, blobs, db = env
    image = image_of(blobs, [os.urandom(500)])
    await push_image(client, blobs, db, "reg.test/team/app", image)
    fake.requests.clear()
    result = await push_image(client, blobs, db, "reg.test/team/copy:latest", image)
    assert result.stats.mounted == 2 and result.stats.uploaded == 0
    posts = [p for m, p in fake.requests if m == "POST"]
    assert posts and all("mount=sha256" in p and "from=team%2Fapp" in p for p in posts)
    assert not [m for m, _ in fake.requests if m == "PATCH"]


async def test_explicit_credentials_win_and_wrong_ones_are_named(
    env: tuple[FakeRegistry, RegistryClient, BlobStore, Database],
) -> None:
    _, client, blobs, db = env
    image = image_of(blobs, [b"x"])
    with pytest.raises(RegistryAuthError, match="'mallory'"):
        await push_image(client, blobs, db, "reg.test/a", image, Credentials("mallory", "no"))
    result = await push_image(client, blobs, db, "reg.test/a", image, Credentials("alice", "pw"))
    assert result.stats.uploaded == 2


async def test_a_digest_is_no_place_to_publish(
    env: tuple[FakeRegistry, RegistryClient, BlobStore, Database],
) -> None:
    _, client, blobs, db = env
    with pytest.raises(InvalidArgumentError, match="names a digest"):
        await push_image(client, blobs, db, "reg.test/a@sha256:" + "0" * 64, image_of(blobs, []))
