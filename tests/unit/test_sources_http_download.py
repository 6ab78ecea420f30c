"""The HTTP worker against a fake transport: redirects (and where the auth header goes),
size limits, checksums, error statuses; what reaches the blob store."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest

from dirk.errors import ChecksumMismatchError, HttpFetchError
from dirk.state.blobs import BlobStore
from dirk.workers.sources.http import HttpSources

pytestmark = pytest.mark.anyio

BODY = b"x" * 5000


def _handler(seen: list[tuple[str, str | None]]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append((str(request.url), request.headers.get("authorization")))
        path = request.url.path
        if path == "/file":
            return httpx.Response(200, content=BODY)
        if path == "/elsewhere":
            return httpx.Response(302, headers={"Location": "https://other.example/file"})
        if path == "/loop":
            return httpx.Response(302, headers={"Location": "/loop"})
        if path == "/forbidden":
            return httpx.Response(403)
        return httpx.Response(404)

    return httpx.MockTransport(handle)


@pytest.fixture
def blobs(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs", tmp_path / "tmp")


async def test_download_stores_by_content(blobs: BlobStore) -> None:
    http = HttpSources(blobs, transport=_handler([]))
    download = await http.download("https://files.example/file")
    assert download.digest == "sha256:" + hashlib.sha256(BODY).hexdigest()
    assert blobs.get_bytes(download.digest) == BODY


async def test_the_auth_header_stays_on_its_host(blobs: BlobStore) -> None:
    seen: list[tuple[str, str | None]] = []
    http = HttpSources(blobs, transport=_handler(seen))
    await http.download("https://files.example/elsewhere", auth_header="Bearer t")
    assert seen == [
        ("https://files.example/elsewhere", "Bearer t"),
        ("https://other.example/file", None),
    ]


async def test_limits_checksums_and_statuses(blobs: BlobStore, tmp_path: Path) -> None:
    http = HttpSources(blobs, max_bytes=1000, transport=_handler([]))
    with pytest.raises(HttpFetchError, match="larger than the engine's limit"):
        await http.download("https://files.example/file")
    http = HttpSources(blobs, transport=_handler([]))
    with pytest.raises(ChecksumMismatchError):
        await http.download("https://files.example/file", checksum="sha256:" + "0" * 64)
    with pytest.raises(HttpFetchError, match="redirects more than"):
        await http.download("https://files.example/loop")
    with pytest.raises(HttpFetchError, match="HTTP 403: the server refused access"):
        await http.download("https://files.example/forbidden?token=hidden")
    with pytest.raises(HttpFetchError, match="HTTP 404") as error:
        await http.download("https://user:pw@files.example/missing")
    assert "pw" not in str(error.value)
    assert not any((tmp_path / "tmp").iterdir()), "a failed download leaves nothing behind"
