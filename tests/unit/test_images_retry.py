"""Retries of registry requests against a MockTransport registry that fails on purpose: what is
retried, how long we wait, when we give up and what the error says, and blob downloads that
resume after a broken connection."""

from __future__ import annotations

import email.utils
import gzip
import hashlib
import io
import json
import logging
import os
import tarfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from dirk.errors import ImageError, ImageNotFoundError, RegistryAuthError, RegistryUnreachableError
from dirk.state import BlobStore, Database, StateLayout
from dirk.workers.images.manifest import OCI_CONFIG, OCI_MANIFEST
from dirk.workers.images.registry import content_range_start
from dirk.workers.images.retry import RetryPolicy, parse_retry_after
from dirk.workers.images.store import ImageStore
from dirk.workers.snapshots.layers import LayerStore

pytestmark = pytest.mark.anyio
HOST = "flaky.test"
TOKEN_URL = "https://auth.flaky.test/token"
FAST = RetryPolicy(attempts=4, first_delay=0.001, max_delay=0.004, retry_after_cap=0.3)
PAYLOAD = os.urandom(2_000_000)


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_blob() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("data/payload")
        info.size = len(PAYLOAD)
        tar.addfile(info, io.BytesIO(PAYLOAD))
    return gzip.compress(buf.getvalue(), compresslevel=1, mtime=0)


LAYER = layer_blob()
CONFIG = json.dumps({"architecture": "amd64", "os": "linux", "config": {}}).encode()
MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": digest_of(CONFIG), "size": len(CONFIG)},
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": digest_of(LAYER),
                "size": len(LAYER),
            }
        ],
    }
).encode()


async def _broken(data: bytes, cut: int) -> AsyncIterator[bytes]:
    """A body whose connection resets after `cut` bytes."""
    for i in range(0, cut, 65536):
        yield data[i : min(i + 65536, cut)]
    raise httpx.ReadError("[Errno 104] Connection reset by peer")


class FlakyRegistry:
    """One image, `flaky.test/app:1`; `plan[kind]` lists the failures its next requests of that
    kind ("manifest", "blob", "token", "config") meet: an HTTP status, "reset" (the connection
    fails), or "cut" (a layer body breaks midway)."""

    def __init__(self) -> None:
        self.plan: dict[str, list[int | str]] = {}
        self.requests: list[httpx.Request] = []
        self.ranges = True  # honour Range requests
        self.range_offset = 0  # a buggy registry starts a 206 this many bytes off
        self.retry_after: str | None = None
        self.bearer = False

    def count(self, kind: str) -> int:
        return sum(1 for r in self.requests if _kind(r) == kind)

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        kind = _kind(request)
        failure = self.plan.get(kind, []).pop(0) if self.plan.get(kind) else None
        if failure == "reset":
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        if isinstance(failure, int):
            headers = {"Retry-After": self.retry_after} if self.retry_after else {}
            body = {"errors": [{"code": "UNAVAILABLE", "message": f"status {failure}"}]}
            return httpx.Response(failure, json=body, headers=headers)
        if kind == "token":
            return httpx.Response(200, json={"token": "t0k"})
        if self.bearer and request.headers.get("authorization") != "Bearer t0k":
            challenge = f'Bearer realm="{TOKEN_URL}",service="{HOST}",scope="repository:app:pull"'
            return httpx.Response(401, headers={"WWW-Authenticate": challenge})
        path = request.url.path
        if kind == "manifest":
            if path.endswith("/manifests/1"):
                headers = {
                    "Content-Type": OCI_MANIFEST,
                    "Docker-Content-Digest": digest_of(MANIFEST),
                }
                return httpx.Response(200, content=MANIFEST, headers=headers)
            code = "MANIFEST_UNKNOWN"
            return httpx.Response(404, json={"errors": [{"code": code, "message": "unknown"}]})
        if kind == "tags":
            return httpx.Response(200, json={"name": "app", "tags": ["1"]})
        if kind == "config":
            return httpx.Response(200, content=CONFIG)
        start = 0
        status, headers = 200, {}
        wanted = request.headers.get("range")
        if wanted and self.ranges:
            start = int(wanted.removeprefix("bytes=").rstrip("-")) + self.range_offset
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(LAYER) - 1}/{len(LAYER)}"
        body = LAYER[start:]
        if failure == "cut":
            return httpx.Response(status, content=_broken(body, len(body) // 3), headers=headers)
        return httpx.Response(status, content=body, headers=headers)


def _kind(request: httpx.Request) -> str:
    path = request.url.path
    if request.url.host != HOST:
        return "token"
    if "/manifests/" in path:
        return "manifest"
    if path.endswith("/tags/list"):
        return "tags"
    return "config" if path.endswith(digest_of(CONFIG)) else "blob"


@pytest.fixture
def flaky() -> FlakyRegistry:
    return FlakyRegistry()


@pytest.fixture
def layout(tmp_path: Path) -> Iterator[StateLayout]:
    yield StateLayout(tmp_path / "state").ensure()


@pytest.fixture
async def store(
    flaky: FlakyRegistry, layout: StateLayout, tmp_path: Path
) -> AsyncIterator[ImageStore]:
    db = Database(layout.db_path)
    s = ImageStore(
        BlobStore(layout.blobs, layout.tmp),
        LayerStore(layout, db),
        docker_config=tmp_path / "none.json",
        transport=httpx.MockTransport(flaky.handler),
        retry=FAST,
    )
    yield s
    await s.aclose()
    db.close()


def assert_pulled(store: ImageStore, layout: StateLayout, layer_id: str) -> None:
    assert store.blobs.path(digest_of(LAYER)).read_bytes() == LAYER
    assert (layout.layers / layer_id / "data" / "payload").read_bytes() == PAYLOAD
    assert list(layout.tmp.iterdir()) == []


def assert_nothing_left(store: ImageStore, layout: StateLayout) -> None:
    assert not store.blobs.has(digest_of(LAYER))
    assert list(layout.layers.iterdir()) == [] and list(layout.tmp.iterdir()) == []


# --- the policy -----------------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap_and_honours_retry_after() -> None:
    policy = RetryPolicy()
    assert [policy.delay(n) for n in (1, 2, 3, 4, 5)] == [0.2, 0.4, 0.8, 1.6, 1.6]
    assert policy.attempts == 4
    assert policy.delay(1, retry_after=3.0) == 3.0
    assert policy.delay(1, retry_after=3600.0) == policy.retry_after_cap == 10.0


def test_retry_after_header_forms() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    now = time.time()
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert 28.0 <= (parse_retry_after(date, now) or 0) <= 31.0
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now) == 0.0


def test_content_range_start() -> None:
    assert content_range_start("bytes 100-199/200") == 100
    assert content_range_start("bytes 5-9/*") == 5
    assert content_range_start(None) is None and content_range_start("items 1-2/3") is None


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, "reset"])
async def test_transient_manifest_failures_are_retried(
    store: ImageStore, flaky: FlakyRegistry, status: int | str, caplog: pytest.LogCaptureFixture
) -> None:
    flaky.plan["manifest"] = [status, status]
    with caplog.at_level(logging.WARNING, "dirk.workers.images"):
        image = await store.resolve(f"{HOST}/app:1")
    assert image.manifest_digest == digest_of(MANIFEST)
    assert flaky.count("manifest") == 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and all("tag '1' of flaky.test/app" in w for w in warnings)
    assert "attempt 2 of 4" in warnings[0] and "attempt 3 of 4" in warnings[1]


async def test_retry_after_is_honoured_up_to_the_cap(
    store: ImageStore, flaky: FlakyRegistry
) -> None:
    flaky.plan["manifest"] = [429]
    flaky.retry_after = "60"  # capped at FAST.retry_after_cap = 0.3 s
    start = time.perf_counter()
    await store.resolve(f"{HOST}/app:1")
    elapsed = time.perf_counter() - start
    assert 0.3 <= elapsed < 2.0, f"waited {elapsed:.2f} s"


async def test_unknown_tag_and_refusals_are_not_retried(
    store: ImageStore, flaky: FlakyRegistry
) -> None:
    with pytest.raises(ImageNotFoundError, match="no tag 'nope'"):
        await store.resolve(f"{HOST}/app:nope")
    assert flaky.count("manifest") == 1
    flaky.plan["manifest"] = [403]
    with pytest.raises(RegistryAuthError, match="denied"):
        await store.resolve(f"{HOST}/app:1")
    assert flaky.count("manifest") == 2


async def test_giving_up_names_registry_manifest_attempts_and_cause(
    store: ImageStore, flaky: FlakyRegistry
) -> None:
    flaky.plan["manifest"] = [503] * 10
    with pytest.raises(ImageError) as info:
        await store.resolve(f"{HOST}/app:1")
    message = str(info.value)
    assert flaky.count("manifest") == 4
    for part in ("registry flaky.test", "tag '1'", "flaky.test/app", "HTTP 503", "4 attempts"):
        assert part in message, f"{part!r} not in {message!r}"


async def test_giving_up_on_a_dead_connection_is_unreachable(
    store: ImageStore, flaky: FlakyRegistry
) -> None:
    flaky.plan["manifest"] = ["reset"] * 10
    with pytest.raises(RegistryUnreachableError) as info:
        await store.resolve(f"{HOST}/app:1")
    message = str(info.value)
    assert "cannot connect to registry flaky.test" in message and "Connection refused" in message
    assert "tag '1' of flaky.test/app" in message and "4 attempts" in message


async def test_token_and_config_fetches_are_retried(
    store: ImageStore, flaky: FlakyRegistry, layout: StateLayout
) -> None:
    flaky.bearer = True
    flaky.plan["token"] = [503, "reset"]
    flaky.plan["config"] = [502]
    image = await store.resolve(f"{HOST}/app:1")
    assert flaky.count("token") == 3 and flaky.count("config") == 2
    snapshot = await store.unpack(image)
    assert_pulled(store, layout, snapshot.layers[0])


# --- blobs ------------------------------------------------------------------------------------


async def test_broken_blob_download_resumes_with_range(
    store: ImageStore, flaky: FlakyRegistry, layout: StateLayout
) -> None:
    image = await store.resolve(f"{HOST}/app:1")
    flaky.plan["blob"] = ["cut", 503, "cut"]
    snapshot = await store.unpack(image)
    assert_pulled(store, layout, snapshot.layers[0])
    blobs = [r for r in flaky.requests if _kind(r) == "blob"]
    assert len(blobs) == 4
    first_cut = len(LAYER) // 3
    second_cut = first_cut + (len(LAYER) - first_cut) // 3
    assert [r.headers.get("range") for r in blobs] == [
        None,
        f"bytes={first_cut}-",
        f"bytes={first_cut}-",
        f"bytes={second_cut}-",
    ]


async def test_broken_blob_download_restarts_without_range_support(
    store: ImageStore, flaky: FlakyRegistry, layout: StateLayout
) -> None:
    flaky.ranges = False
    image = await store.resolve(f"{HOST}/app:1")
    flaky.plan["blob"] = ["cut", "cut", "cut"]  # the same cut again: no progress
    snapshot = await store.unpack(image)
    assert_pulled(store, layout, snapshot.layers[0])
    assert flaky.count("blob") == 4


async def test_a_misplaced_range_answer_falls_back_to_the_whole_blob(
    store: ImageStore, flaky: FlakyRegistry, layout: StateLayout
) -> None:
    flaky.range_offset = 7
    image = await store.resolve(f"{HOST}/app:1")
    flaky.plan["blob"] = ["cut"]
    snapshot = await store.unpack(image)
    assert_pulled(store, layout, snapshot.layers[0])
    ranges = [r.headers.get("range") for r in flaky.requests if _kind(r) == "blob"]
    assert ranges == [None, f"bytes={len(LAYER) // 3}-", None]


async def test_a_blob_that_keeps_failing_leaves_nothing_behind(
    store: ImageStore, flaky: FlakyRegistry, layout: StateLayout
) -> None:
    image = await store.resolve(f"{HOST}/app:1")
    flaky.plan["blob"] = ["cut", 500, 500, 500]
    with pytest.raises(ImageError) as info:
        await store.unpack(image)
    message = str(info.value)
    for part in ("registry flaky.test", f"blob {digest_of(LAYER)}", "HTTP 500", "4 attempts"):
        assert part in message, f"{part!r} not in {message!r}"
    assert flaky.count("blob") == 4
    assert_nothing_left(store, layout)


async def test_missing_blob_is_not_retried(
    store: ImageStore, flaky: FlakyRegistry, layout: StateLayout
) -> None:
    image = await store.resolve(f"{HOST}/app:1")
    flaky.plan["blob"] = [404]
    with pytest.raises(ImageNotFoundError):
        await store.unpack(image)
    assert flaky.count("blob") == 1
    assert_nothing_left(store, layout)
