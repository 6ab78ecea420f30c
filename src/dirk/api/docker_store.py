"""The host's container image store: `Container.exportImage` loads an image into it and
`Host.containerImage` takes one out (`workers.images.docker_store`: a Docker daemon's unix
socket). The session's owner must be able to connect to that socket itself: the engine (root)
talks to the daemon for it, as `host().unix_socket` does. Loading acts outside the engine, so it
runs on every call (no memo); an image taken out is keyed by its image ID."""

from __future__ import annotations

import stat
from pathlib import Path

from dirk.api.container_ops import default_platform
from dirk.api.context import RequestContext
from dirk.api.directory import SCRATCH
from dirk.api.image_out import image_options, images_of, imported_container
from dirk.api.registry import Args, builds, leaf
from dirk.api.socket import owner_socket_mode
from dirk.api.values import Container, File, Handle
from dirk.errors import ImageError
from dirk.solver.ops import DockerImageSave, Ref
from dirk.workers.images import docker_store

#: Where the saved image is in the output of its `DockerImageSave` step.
SAVED_PATH = "/image.tar"


async def _daemon_socket(ctx: RequestContext) -> Path:
    """The Docker socket the session's client would use, once its owner may connect to it."""
    path = docker_store.docker_socket(ctx.session.client_env)
    mode = await ctx.host.run(owner_socket_mode, path)
    if mode is None or not stat.S_ISSOCK(mode):
        raise ImageError(
            f"no Docker daemon socket at {path}: start Docker (or set DOCKER_HOST="
            "unix:///path/to/docker.sock) to use the host's image store"
        )
    return path


@leaf("Container", "exportImage", memo=False)
async def container_export_image(ctx: RequestContext, parent: Handle | None, args: Args) -> None:
    assert parent is not None and isinstance(parent.value, Container)
    socket = await _daemon_socket(ctx)
    compression, media_types = image_options(args)
    images = images_of(ctx, parent.value, args)
    await ctx.solver.images_out.export_to_docker(
        ctx.job, images, compression, media_types, args["name"], socket
    )


@builds("Host", "containerImage")
async def host_container_image(ctx: RequestContext, parent: Handle | None, args: Args) -> Container:
    name: str = args["name"]
    socket = await _daemon_socket(ctx)
    image_id = await docker_store.image_id(socket, name)
    saved = File(Ref(DockerImageSave(str(socket), name, image_id)), SAVED_PATH)
    return await imported_container(
        ctx, Container(rootfs=SCRATCH, platform=default_platform()), saved, ""
    )
