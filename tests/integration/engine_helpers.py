"""Small builders that describe pipelines as operations, the way the API layer does."""

from __future__ import annotations

from collections.abc import Sequence

from dirk.engine import EngineCore
from dirk.solver.job import BACKGROUND
from dirk.solver.ops import Exec, ExecMount, ImagePull, Ref
from dirk.workers.images.config import ImageConfig


async def image(engine: EngineCore, reference: str) -> tuple[Ref, ImageConfig]:
    """The rootfs of `reference` (resolved now) and its configuration."""
    resolved = await engine.solver.resolve_image(BACKGROUND, reference)
    return Ref(ImagePull(reference, resolved.manifest_digest)), resolved.config


def sh(
    root: Ref,
    script: str,
    *,
    env: Sequence[str] = (),
    cwd: str = "/",
    user: str = "",
    mounts: Sequence[ExecMount] = (),
    stdin: bytes | None = None,
    network: bool = True,
) -> Exec:
    """An exec of `sh -c script` on `root`, with busybox's PATH."""
    path = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    return Exec(
        root=root,
        args=("sh", "-c", script),
        env=(path, *env),
        cwd=cwd,
        user=user,
        mounts=tuple(mounts),
        stdin=stdin,
        network=network,
    )


async def stdout(engine: EngineCore, op: Exec) -> str:
    result = await engine.solver.result(BACKGROUND, op)
    assert result.exec is not None
    return result.exec.stdout.decode()
