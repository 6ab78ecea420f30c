"""ImageTarball and ImageImport: images out of and back into the solver (`solver.images_out`
does the work with the images worker).

ImageTarball's key covers every platform's rootfs key and image settings, the compression and
the media types; running it builds the image's blobs (made once per layer and compression)
and writes them as an OCI layout tarball, `/image.tar` of output 0. ImageImport's key covers
the tarball's source key, path, manifest digest, platform and tag; running it reads the
tarball again only when its blobs have left the store, checks that it still holds that
manifest, and unpacks the image's root filesystem. DockerImageSave's key covers the image ID
alone; running it saves that image from the Docker daemon into `/image.tar` (checked to be
still that image).
"""

from __future__ import annotations

from dirk.solver.handlers.base import Handler, Step
from dirk.solver.job import BACKGROUND
from dirk.solver.ops import DockerImageSave, ImageImport, ImageTarball
from dirk.solver.results import OpResult


class ImageTarballHandler(Handler[ImageTarball]):
    async def run(self, op: ImageTarball, step: Step) -> OpResult:
        snapshots = [step.inputs[i.rootfs] for i in op.images]
        jobs = step.jobs()
        job = jobs[0] if jobs else BACKGROUND  # inputs are solved: the job is only a formality
        out = self.workers.images_out
        tarball = await out.tarball(job, op.images, op.compression, op.media_types, snapshots)
        return OpResult(step.key, (tarball,))


class ImageImportHandler(Handler[ImageImport]):
    async def run(self, op: ImageImport, step: Step) -> OpResult:
        rootfs = await self.workers.images_out.unpack_import(op, step.inputs[op.source])
        return OpResult(step.key, (rootfs,))


class DockerImageSaveHandler(Handler[DockerImageSave]):
    async def run(self, op: DockerImageSave, step: Step) -> OpResult:
        snapshot = await self.workers.images_out.save_from_docker(op)
        return OpResult(step.key, (snapshot,))
