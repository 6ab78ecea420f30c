"""ImagePull: an image's root filesystem. The key covers the manifest digest and platform,
not the reference the user wrote (a tag moves, a digest does not) nor the service its registry
runs as (`registryService`). Running it downloads, verifies and unpacks each layer not already
in the store (`ImageStore.unpack`), with the registry credentials of the session that asked
(`Job.docker_config`), and with the registry service started (in that session) when there is
one."""

from __future__ import annotations

from dirk.solver.handlers.base import Handler, Step
from dirk.solver.job import BACKGROUND
from dirk.solver.ops import ImagePull
from dirk.solver.results import OpResult
from dirk.solver.service_hosts import served_registry
from dirk.workers.images.auth import using_docker_config
from dirk.workers.images.registry import using_registry_endpoints


class ImagePullHandler(Handler[ImagePull]):
    async def run(self, op: ImagePull, step: Step) -> OpResult:
        # With the credentials of the first job waiting: each job resolved the digest with
        # its own already, so any of theirs may fetch its content.
        jobs = step.jobs()
        config = await jobs[0].registry_credentials() if jobs else None
        job = jobs[0] if jobs else BACKGROUND
        services = self.workers.services
        async with served_registry(services, job, op.registry_service, op.reference) as reached:
            with using_docker_config(config), using_registry_endpoints(reached):
                resolved = await self.workers.pinned_image(op.reference, op.digest, op.platform)
                return OpResult(step.key, (await self.workers.images.unpack(resolved),))
