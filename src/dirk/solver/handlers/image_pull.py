"""ImagePull: an image's root filesystem. The key covers the manifest digest and platform,
not the reference the user wrote (a tag moves, a digest does not). Running it downloads,
verifies and unpacks each layer not already in the store (`ImageStore.unpack`)."""

from __future__ import annotations

from dirk.solver.handlers.base import Handler, Step
from dirk.solver.ops import ImagePull
from dirk.solver.results import OpResult


class ImagePullHandler(Handler[ImagePull]):
    async def run(self, op: ImagePull, step: Step) -> OpResult:
        resolved = await self.workers.pinned_image(op.reference, op.digest, op.platform)
        return OpResult(step.key, (await self.workers.images.unpack(resolved),))
