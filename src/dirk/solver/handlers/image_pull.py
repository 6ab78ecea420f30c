"""ImagePull: an image's root filesystem. The key covers the manifest digest and platform,
not the reference the user wrote (a tag moves, a digest does not). Running it downloads,
verifies and unpacks each layer not already in the store (`ImageStore.unpack`), with the
registry credentials of the session that asked (`Job.docker_config`)."""

from __future__ import annotations

from dirk.solver.handlers.base import Handler, Step
from dirk.solver.ops import ImagePull
from dirk.solver.results import OpResult
from dirk.workers.images.auth import using_docker_config


class ImagePullHandler(Handler[ImagePull]):
    async def run(self, op: ImagePull, step: Step) -> OpResult:
        # With the credentials of the first job waiting: each job resolved the digest with
        # its own already, so any of theirs may fetch its content.
        jobs = step.jobs()
        config = await jobs[0].registry_credentials() if jobs else None
        with using_docker_config(config):
            resolved = await self.workers.pinned_image(op.reference, op.digest, op.platform)
            return OpResult(step.key, (await self.workers.images.unpack(resolved),))
