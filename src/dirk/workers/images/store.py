"""Resolve image references to pinned manifests, and unpack their layers once each.

`resolve` fetches only small documents (index, manifest, config), each verified against its
digest and kept in the blob store, so a reference pinned by digest resolves without network.
`unpack` downloads the compressed layers it does not have (at most 4 at once), keeps them in the
blob store (a later push needs them) and extracts each into its own layer directory, keyed by
its compressed digest: a layer shared by many images is unpacked once, and concurrent pulls of
the same layer wait for the one doing the work.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from dirk.errors import DigestMismatchError, ImageError, PlatformNotFoundError
from dirk.state.blobs import BlobStore, BlobWriter, sha256_digest
from dirk.workers.images.auth import default_docker_config
from dirk.workers.images.config import (
    ImageConfig,
    LayerDescriptor,
    ResolvedImage,
    parse_config_blob,
)
from dirk.workers.images.decompress import decompressed, make_pipe, open_decompressed, sniff
from dirk.workers.images.manifest import (
    INDEX_TYPES,
    LAYER_TYPES,
    media_type_of,
    parse_index,
    parse_manifest,
)
from dirk.workers.images.platform import Platform
from dirk.workers.images.reference import ImageReference
from dirk.workers.images.registry import RegistryClient
from dirk.workers.images.retry import DEFAULT_RETRY, RetryPolicy
from dirk.workers.images.unpack import unpack_tar
from dirk.workers.snapshots.layers import LayerStore, Snapshot, new_layer_id

if TYPE_CHECKING:
    import httpx

MAX_CONCURRENT_DOWNLOADS = 4
#: The registry name of images that came from a tarball, not a registry.
IMPORTED = "import.dirk.invalid"
#: Downloaded bytes are handed to a worker thread (hashing, writing) in pieces of this size.
_WRITE_BATCH = 1024 * 1024
_MAX_CONFIG_BYTES = 16 * 1024 * 1024
_MAX_INDEX_DEPTH = 2


class ImageStore:
    def __init__(
        self,
        blobs: BlobStore,
        layers: LayerStore,
        *,
        insecure_registries: Sequence[str] = (),
        docker_config: Path | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        max_concurrent_downloads: int = MAX_CONCURRENT_DOWNLOADS,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        """`transport` replaces the network (tests); `docker_config` defaults to Docker's own
        (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`); `retry` says how often and
        how patiently a failed registry request is made again."""
        self.blobs = blobs
        self.layers = layers
        self._client = RegistryClient(
            docker_config or default_docker_config(),
            insecure_registries=insecure_registries,
            transport=transport,
            retry=retry,
        )
        self._max_downloads = max_concurrent_downloads
        self._download_slots: anyio.Semaphore | None = None
        self._layer_locks: dict[str, anyio.Lock] = {}

    async def aclose(self) -> None:
        await self._client.aclose()

    @property
    def registry(self) -> RegistryClient:
        """The registry client (pushes share its connections and retry policy)."""
        return self._client

    # --- resolve --------------------------------------------------------------------------

    async def resolve(self, reference: str, platform: str = "linux/amd64") -> ResolvedImage:
        """Pin `reference` to the manifest for `platform`, with its config; no layers."""
        ref = ImageReference.parse(reference)
        wanted = Platform.parse(platform)
        where = str(ref)
        digest, media_type, obj = await self._manifest(ref, ref.manifest_ref, ref.digest)
        chosen: Platform | None = None
        depth = 0
        while media_type in INDEX_TYPES:
            depth += 1
            if depth > _MAX_INDEX_DEPTH:
                raise ImageError(f"{where}: image indexes are nested too deeply")
            entry = parse_index(obj, where).select(wanted, where)
            chosen = entry.platform
            digest, media_type, obj = await self._manifest(ref, entry.digest, entry.digest)
        manifest = parse_manifest(obj, where)
        config_json = await self._config(ref, manifest.config_digest, manifest.config_size)
        declared = Platform.from_json(config_json)
        if declared.os and declared.architecture:
            if chosen is None and not wanted.matches(declared):
                raise PlatformNotFoundError(
                    f"{where} is a single-platform image for {declared}, not {wanted}; ask for "
                    f"platform {str(declared)!r} or use an image built for {wanted}"
                )
            plat = str(declared)
        else:
            plat = str(chosen or wanted)
        return ResolvedImage(
            reference=ref.with_digest(digest),
            manifest_digest=digest,
            config_digest=manifest.config_digest,
            config=ImageConfig.from_json(config_json.get("config")),
            layers=manifest.layers,
            platform=plat,
            diff_ids=_diff_ids(config_json, len(manifest.layers)),
        )

    async def _manifest(
        self, ref: ImageReference, target: str, expected: str | None
    ) -> tuple[str, str, dict[str, Any]]:
        """Digest, media type and JSON of a manifest or index; from the store when pinned."""
        where = f"{ref.name}@{expected}" if expected else str(ref)
        if expected is not None and self.blobs.has(expected):
            body = self.blobs.get_bytes(expected)
            media_type, obj = media_type_of(body, None, where)
            return expected, media_type, obj
        body, content_type, claimed = await self._client.get_manifest(ref, target)
        digest = sha256_digest(body)
        if expected is None and claimed and claimed.startswith("sha256:") and claimed != digest:
            raise DigestMismatchError(
                f"the manifest of {ref} does not match the digest the registry announced: "
                f"{claimed} announced, {digest} received; nothing was stored. Retry; report it "
                "to the registry's operator if it persists"
            )
        media_type, obj = media_type_of(body, content_type, where)
        await anyio.to_thread.run_sync(self.blobs.put_bytes, body, expected)
        return digest, media_type, obj

    async def _config(self, ref: ImageReference, digest: str, size: int) -> dict[str, Any]:
        if self.blobs.has(digest):
            data = self.blobs.get_bytes(digest)
        else:
            data = await self._client.get_blob(ref, digest, min(size, _MAX_CONFIG_BYTES))
            await anyio.to_thread.run_sync(self.blobs.put_bytes, data, digest)
        return parse_config_blob(data, str(ref))

    # --- unpack ---------------------------------------------------------------------------

    async def unpack(self, image: ResolvedImage) -> Snapshot:
        """The image's filesystem: one layer directory per image layer, bottom first."""
        if self._download_slots is None:
            self._download_slots = anyio.Semaphore(self._max_downloads)
        ids: list[str] = [""] * len(image.layers)
        errors: list[Exception] = []

        async def one(index: int, layer: LayerDescriptor) -> None:
            try:
                ids[index] = await self._layer(image.reference, layer)
            except Exception as exc:
                errors.append(exc)
                tg.cancel_scope.cancel()

        async with anyio.create_task_group() as tg:
            for index, layer in enumerate(image.layers):
                tg.start_soon(one, index, layer)
        if errors:
            raise errors[0]
        await anyio.to_thread.run_sync(self._remember_blobs, image, ids)
        return Snapshot(_topmost_occurrences(ids))

    def _remember_blobs(self, image: ResolvedImage, ids: Sequence[str]) -> None:
        """Note each layer's blob (so a push reuses it, uncompressed digest included) and the
        repository it came from (so a push to a sibling repository mounts it)."""
        db = self.layers.db
        pulled = image.reference.registry != IMPORTED
        for layer_id, layer, diff_id in zip(ids, image.layers, image.diff_ids, strict=False):
            kind = LAYER_TYPES.get(layer.media_type)
            if kind is not None and len(image.diff_ids) == len(image.layers):
                db.add_layer_blob(layer_id, kind, layer.digest, diff_id, layer.size)
            if pulled:
                db.add_blob_source(
                    layer.digest, image.reference.registry, image.reference.repository
                )
        if pulled:
            db.add_blob_source(
                image.config_digest, image.reference.registry, image.reference.repository
            )

    async def _layer(self, ref: ImageReference, layer: LayerDescriptor) -> str:
        lock = self._layer_locks.setdefault(layer.digest, anyio.Lock())
        async with lock:
            existing = self.layers.by_source(layer.digest)
            if existing is not None:
                return existing
            if self.blobs.has(layer.digest):
                return await anyio.to_thread.run_sync(self._unpack_blob, layer)
            assert self._download_slots is not None
            async with self._download_slots:
                return await self._pull_layer(ref, layer)

    def _unpack_blob(self, layer: LayerDescriptor) -> str:
        """Blocking: extract a stored blob into a new layer directory registered under it."""
        what = f"layer {layer.digest}"
        with (
            self.layers.create(source=layer.digest) as builder,
            open_decompressed(self.blobs.path(layer.digest), what) as source,
        ):
            unpack_tar(source, builder.path, what)
        return builder.layer_id

    async def _pull_layer(self, ref: ImageReference, layer: LayerDescriptor) -> str:
        """Download, store and extract a layer in one pass.

        The event loop receives the blob; a worker thread hashes it into the blob store and
        writes it into a pipe; another thread decompresses from that pipe and extracts. The layer
        directory is committed only after the blob's digest has been verified, so corrupt data
        leaves neither a blob nor a layer behind.
        """
        what = f"layer {layer.digest}"
        layer_id = new_layer_id()
        tmp = self.layers.layout.tmp / f"layer-{layer_id}"
        tmp.mkdir()
        errors: dict[str, Exception] = {}
        try:
            async with self._client.open_blob(ref, layer.digest, layer.size) as chunks:
                head = await _read_head(chunks, 4)
                with self.blobs.writer(layer.digest) as writer:
                    read_fd, write_fd = make_pipe()  # the extraction task closes read_fd
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(_extract_task, read_fd, sniff(head), tmp, what, errors)
                        try:
                            await _feed(head, chunks, writer, write_fd, layer, ref)
                            await anyio.to_thread.run_sync(writer.commit)
                        except Exception as exc:
                            errors["download"] = exc
                        finally:
                            os.close(write_fd)
            failed = errors.get("download")
            if failed is not None and not (
                isinstance(failed, BrokenPipeError) and "extract" in errors
            ):
                raise failed  # a download error explains a truncated extraction, not the reverse
            if "extract" in errors:
                raise errors["extract"]
            await anyio.to_thread.run_sync(self.layers.adopt, tmp, layer_id, layer.digest)
            return layer_id
        except BaseException:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(shutil.rmtree, tmp, True)
            raise


async def _read_head(chunks: AsyncIterator[bytes], size: int) -> bytes:
    """At least `size` bytes from the start of the stream (fewer if it is shorter)."""
    head = b""
    while len(head) < size:
        try:
            head += await chunks.__anext__()
        except StopAsyncIteration:
            break
    return head


async def _feed(
    head: bytes,
    chunks: AsyncIterator[bytes],
    writer: BlobWriter,
    fd: int,
    layer: LayerDescriptor,
    ref: ImageReference,
) -> None:
    """Hand the downloaded bytes, in batches, to a thread that stores and pipes them."""
    pending, size = [head], len(head)
    async for chunk in chunks:
        pending.append(chunk)
        size += len(chunk)
        if size >= _WRITE_BATCH:
            await anyio.to_thread.run_sync(_store_and_pipe, writer, fd, b"".join(pending))
            pending, size = [], 0
            if writer.size > layer.size:
                raise DigestMismatchError(
                    f"layer {layer.digest} of {ref} is larger than the {layer.size} bytes its "
                    "manifest says; nothing was stored. The registry served corrupt data: retry"
                )
    if size:
        await anyio.to_thread.run_sync(_store_and_pipe, writer, fd, b"".join(pending))


def _store_and_pipe(writer: BlobWriter, fd: int, data: bytes) -> None:
    writer.write(data)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


async def _extract_task(
    fd: int, kind: str, dest: Path, what: str, errors: dict[str, Exception]
) -> None:
    try:
        await anyio.to_thread.run_sync(_extract_fd, fd, kind, dest, what)
    except Exception as exc:
        errors["extract"] = exc


def _extract_fd(fd: int, kind: str, dest: Path, what: str) -> None:
    """Blocking: extract from a pipe; closing it at the end stops the feeder if we failed."""
    try:
        with decompressed(fd, kind, what) as source:
            unpack_tar(source, dest, what)
    finally:
        os.close(fd)


def _diff_ids(config: dict[str, Any], count: int) -> tuple[str, ...]:
    """The config's diff_ids, when it lists one per layer (else none: they cannot be paired)."""
    rootfs = config.get("rootfs")
    ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(ids, list) or len(ids) != count:
        return ()
    return tuple(str(i) for i in ids)


def _topmost_occurrences(ids: Sequence[str]) -> tuple[str, ...]:
    """A layer listed twice counts once, at its upper place: overlayfs rejects repeated lower
    directories, and applying a layer again over itself changes nothing below the top copy."""
    seen: set[str] = set()
    kept = []
    for layer_id in reversed(ids):
        if layer_id not in seen:
            seen.add(layer_id)
            kept.append(layer_id)
    return tuple(reversed(kept))
