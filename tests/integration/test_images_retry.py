"""Pulls through a flaky HTTP proxy in front of the real local registry (`make images`): the
first download of each blob is cut midway and the first manifest request answers 503, and the
pull still lands every byte right."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import io
import logging
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import httpx
import pytest

from dirk.state import BlobStore, Database, StateLayout
from dirk.workers.images.store import ImageStore
from dirk.workers.snapshots.layers import LayerStore

pytestmark = [pytest.mark.integration, pytest.mark.anyio]
#: A blob's first download is cut after this many bytes (or half the blob, if it is smaller).
CUT_AFTER = 300_000


@attrs.define
class Seen:
    method: str
    path: str
    range: str | None
    outcome: str  # "503", "cut" or "passed"


@attrs.define
class FlakyProxy:
    """One request per connection: read its head, answer 503 or forward it to the registry
    (asking it to close afterwards), and relay the answer, cutting it short if planned."""

    upstream: tuple[str, int]
    ranges: bool = True  # False: strip Range headers, as a proxy without range support would
    seen: list[Seen] = attrs.Factory(list)
    _failed_manifest: bool = False
    _cut: set[str] = attrs.Factory(set)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = [line for line in lines[1:] if line]
        wanted = next((h.split(":", 1)[1].strip() for h in headers if _is(h, "range")), None)
        if "/manifests/" in path and not self._failed_manifest:
            self._failed_manifest = True
            self.seen.append(Seen(method, path, wanted, "503"))
            body = b'{"errors":[{"code":"UNAVAILABLE","message":"try again"}]}'
            writer.write(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
            )
            await writer.drain()
            writer.close()
            return
        cut = "/blobs/" in path and path not in self._cut
        if cut:
            self._cut.add(path)
        kept = [h for h in headers if not _is(h, "connection")]
        if not self.ranges:
            kept = [h for h in kept if not _is(h, "range")]
        request = "\r\n".join([lines[0], *kept, "Connection: close", "", ""]).encode("latin-1")
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        try:
            up_writer.write(request)
            await up_writer.drain()
            response_head = await up_reader.readuntil(b"\r\n\r\n")
            writer.write(response_head)
            length = _content_length(response_head)
            budget = min(CUT_AFTER, length // 2) if cut and length else None
            self.seen.append(Seen(method, path, wanted, "cut" if budget else "passed"))
            while chunk := await up_reader.read(65536):
                if budget is not None:
                    chunk = chunk[:budget]
                    budget -= len(chunk)
                writer.write(chunk)
                await writer.drain()
                if budget == 0:
                    writer.transport.abort()  # a reset mid-body
                    return
            writer.close()
        finally:
            up_writer.close()


def _is(header: str, name: str) -> bool:
    return header.split(":", 1)[0].strip().lower() == name


def _content_length(head: bytes) -> int:
    for line in head.decode("latin-1").split("\r\n")[1:]:
        if _is(line, "content-length"):
            return int(line.split(":", 1)[1])
    return 0


@contextlib.asynccontextmanager
async def flaky_proxy(registry: str, *, ranges: bool) -> AsyncIterator[tuple[str, FlakyProxy]]:
    host, port = registry.rsplit(":", 1)
    proxy = FlakyProxy((host, int(port)), ranges=ranges)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    address = server.sockets[0].getsockname()
    try:
        yield f"127.0.0.1:{address[1]}", proxy
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("ranges", [True, False], ids=["resumed", "restarted"])
async def test_pull_survives_a_cut_blob_and_a_503(
    registry: str, tmp_path: Path, ranges: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "dirk.workers.images")
    layout = StateLayout(tmp_path / "state").ensure()
    db = Database(layout.db_path)
    store = ImageStore(
        BlobStore(layout.blobs, layout.tmp),
        LayerStore(layout, db),
        docker_config=tmp_path / "none.json",
    )
    try:
        async with flaky_proxy(registry, ranges=ranges) as (address, proxy):
            image = await store.resolve(f"{address}/busybox:latest")
            snapshot = await store.unpack(image)
    finally:
        await store.aclose()
        db.close()

    outcomes = [(s.path.rsplit("/", 2)[-2], s.outcome, s.range) for s in proxy.seen]
    assert outcomes[:2] == [("manifests", "503", None), ("manifests", "passed", None)]
    layer = image.layers[0]
    layer_requests = [s for s in proxy.seen if s.path.endswith(layer.digest)]
    assert [s.outcome for s in layer_requests] == ["cut", "passed"]
    assert layer_requests[1].range == f"bytes={CUT_AFTER}-", "the retry asks for the rest"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3, warnings  # the manifest, the config blob, the layer
    assert any("HTTP 503" in w and "tag 'latest'" in w for w in warnings)
    how = "resumed at byte" if ranges else "restarted (no Range); skipping"
    assert any(how in r.getMessage() and layer.digest in r.getMessage() for r in caplog.records)

    direct = httpx.get(
        f"http://{registry}/v2/busybox/blobs/{layer.digest}", trust_env=False, timeout=10
    )
    stored = store.blobs.path(layer.digest).read_bytes()
    assert "sha256:" + hashlib.sha256(stored).hexdigest() == layer.digest
    assert stored == direct.content
    assert list(layout.tmp.iterdir()) == [], "no half-written blob or layer is left"

    unpacked = layout.layers / snapshot.layers[0]
    files = 0
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(direct.content))) as tar:
        for member in tar:
            target = unpacked / member.name
            if member.isfile():
                source = tar.extractfile(member)
                assert source is not None
                assert target.read_bytes() == source.read(), f"{member.name} differs"
                files += 1
            elif member.issym():
                assert target.readlink() == Path(member.linkname), f"{member.name} differs"
    assert files > 0 and (unpacked / "bin" / "busybox").stat().st_size > 500_000
