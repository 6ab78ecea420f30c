"""`Directory.dockerBuild`: the directory is the build context."""

from __future__ import annotations

from dirk.api.context import RequestContext
from dirk.api.dockerfile.build import BuildOptions, docker_build, resolve_build_args
from dirk.api.registry import Args, builds
from dirk.api.secret import load_secret
from dirk.api.values import Container, Directory, Handle, Secret, Socket


@builds("Directory", "dockerBuild")
async def directory_docker_build(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Container:
    assert parent is not None and isinstance(parent.value, Directory)
    secrets: dict[str, Secret] = {}
    for secret_id in args.get("secrets") or []:
        secret = await load_secret(ctx, secret_id)
        secrets[secret.name] = secret
    opts = BuildOptions(
        dockerfile=args["dockerfile"],
        platform=args.get("platform") or "",
        build_args=resolve_build_args(args["buildArgs"]),
        target=args["target"],
        secrets=secrets,
        ssh=_socket(ctx, args.get("ssh")),
    )
    return await docker_build(ctx, parent.value, opts)


def _socket(ctx: RequestContext, socket_id: object) -> Socket | None:
    if not socket_id:
        return None
    socket = ctx.load(socket_id, "Socket").value
    assert isinstance(socket, Socket)
    return socket
