"""Images out of the solver: solve a container's root filesystems, then have the images worker
turn their layers into an image (blobs cached per layer and compression) and publish it or
keep it as a tarball (which an export copies to the host). Publishing has an effect outside
the engine, so it runs every time; the blobs it needs are made once.
"""

from __future__ import annotations

import tempfile
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import anyio.to_thread

from dirk.errors import ImageError
from dirk.solver.job import Job
from dirk.solver.ops import (
    DockerImageSave,
    ImageCompression,
    ImageImport,
    ImageMediaTypes,
    ImagePlatform,
    Ref,
)
from dirk.state.blobs import BlobStore
from dirk.state.db import Database
from dirk.workers.images import docker_store
from dirk.workers.images.auth import Credentials, using_docker_config
from dirk.workers.images.image_out import (
    BuiltImage,
    ImageSettings,
    PlatformImage,
    build_image,
)
from dirk.workers.images.layers_out import Compression, LayerBlobs
from dirk.workers.images.push import PushResult, push_image
from dirk.workers.images.store import ImageStore
from dirk.workers.images.tarball import ImportedImage, import_image_tar, write_image_tar
from dirk.workers.snapshots.layers import LayerStore, Snapshot
from dirk.workers.snapshots.snapshotter import Snapshotter

SolveAll = Callable[[Job, Sequence[Ref]], Awaitable[list[Snapshot]]]
TARBALL_NAME = "image.tar"


class ImagesOut:
    def __init__(
        self,
        *,
        solve_all: SolveAll,
        db: Database,
        blobs: BlobStore,
        layers: LayerStore,
        snapshotter: Snapshotter,
        images: ImageStore,
    ) -> None:
        self._solve_all = solve_all
        self._db = db
        self._blobs = blobs
        self._layers = layers
        self._snap = snapshotter
        self._images = images
        self.layer_blobs = LayerBlobs(blobs, layers, db)

    async def build(
        self,
        job: Job,
        images: Sequence[ImagePlatform],
        compression: ImageCompression,
        media_types: ImageMediaTypes,
        snapshots: Sequence[Snapshot] | None = None,
    ) -> BuiltImage:
        """Every blob of the image of `images`, in the blob store."""
        if snapshots is None:
            snapshots = await self._solve_all(job, [i.rootfs for i in images])
        platforms = [
            PlatformImage(snapshot.layers, i.platform, _settings(i))
            for i, snapshot in zip(images, snapshots, strict=True)
        ]
        forced: Compression | None = compression or None
        return await anyio.to_thread.run_sync(
            lambda: build_image(
                platforms,
                self.layer_blobs,
                compression=forced,
                media_types=media_types,
            )
        )

    async def publish(
        self,
        job: Job,
        address: str,
        images: Sequence[ImagePlatform],
        compression: ImageCompression,
        media_types: ImageMediaTypes,
        credentials: Credentials | None,
    ) -> PushResult:
        built = await self.build(job, images, compression, media_types)
        with using_docker_config(await job.registry_credentials()):
            return await push_image(
                self._images.registry, self._blobs, self._db, address, built, credentials
            )

    async def tarball(
        self,
        job: Job,
        images: Sequence[ImagePlatform],
        compression: ImageCompression,
        media_types: ImageMediaTypes,
        snapshots: Sequence[Snapshot],
    ) -> Snapshot:
        """A one-layer snapshot holding the image as `/image.tar`."""
        built = await self.build(job, images, compression, media_types, snapshots)

        def write() -> Snapshot:
            with self._layers.create() as builder, open(builder.path / TARBALL_NAME, "wb") as f:
                write_image_tar(built, self._blobs, f)
            return Snapshot((builder.layer_id,))

        return await anyio.to_thread.run_sync(write)

    async def export_to_docker(
        self,
        job: Job,
        images: Sequence[ImagePlatform],
        compression: ImageCompression,
        media_types: ImageMediaTypes,
        name: str,
        socket: Path,
    ) -> None:
        """Load the image into the Docker daemon at `socket`, tagged `name` (the main
        platform: a Docker image store without containerd holds one platform per name)."""
        built = await self.build(job, images[:1], compression, media_types)
        tmp = self._layers.layout.tmp
        with tempfile.NamedTemporaryFile(dir=tmp, prefix="docker-load-", suffix=".tar") as f:

            def write() -> None:
                write_image_tar(built, self._blobs, f, (name,), docker_manifest=True)
                f.flush()

            await anyio.to_thread.run_sync(write)
            await docker_store.load(socket, Path(f.name))

    async def save_from_docker(self, op: DockerImageSave) -> Snapshot:
        """A one-layer snapshot holding `docker save` of `op.name` as `/image.tar`."""
        socket = Path(op.socket)
        found = await docker_store.image_id(socket, op.name)
        if found != op.image_id:
            raise ImageError(
                f"{op.name} in the Docker image store at {socket} is now {found}, not "
                f"{op.image_id}: call host().container_image({op.name!r}) again"
            )
        with self._layers.create() as builder:
            await docker_store.save(socket, op.name, builder.path / TARBALL_NAME)
            return Snapshot((builder.layer_id,))

    async def read_tarball(
        self, job: Job, source: Ref, path: str, platform: str, tag: str
    ) -> ImportedImage:
        """The image in the tarball file `path` of `source`, its blobs now in the store."""
        (snapshot,) = await self._solve_all(job, [source])

        def read() -> ImportedImage:
            real = self._snap.file_path(snapshot, path)
            return import_image_tar(real, self._blobs, platform, tag, f"image tarball {path}")

        return await anyio.to_thread.run_sync(read)

    async def unpack_import(self, op: ImageImport, source: Snapshot) -> Snapshot:
        def read() -> ImportedImage:
            real = self._snap.file_path(source, op.path)
            return import_image_tar(real, self._blobs, op.platform, op.tag, f"image {op.path}")

        imported = await anyio.to_thread.run_sync(read)
        if imported.resolved.manifest_digest != op.manifest_digest:
            raise ImageError(
                f"image tarball {op.path} now holds image {imported.resolved.manifest_digest}, "
                f"not {op.manifest_digest} as when it was imported"
            )
        return await self._images.unpack(imported.resolved)


def _settings(i: ImagePlatform) -> ImageSettings:
    return ImageSettings(
        env=i.env,
        entrypoint=i.entrypoint,
        cmd=i.cmd,
        workdir=i.workdir,
        user=i.user,
        labels=i.labels,
        exposed_ports=i.exposed_ports,
        base_config=i.base_config,
        healthcheck=i.healthcheck,
        annotations=i.annotations,
    )
