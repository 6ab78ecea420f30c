"""`Socket`: a unix socket of the host, by path; checked when the call is made, then used by
git's SSH client (`git(sshAuthSocket:)`) or bind-mounted into containers
(`Container.withUnixSocket`)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import attrs

from dirk.api.container_ops import with_mount
from dirk.api.context import RequestContext
from dirk.api.host import host_path
from dirk.api.paths import container_path, expand
from dirk.api.registry import Args, builds
from dirk.api.values import Container, Handle, Mount, Socket
from dirk.errors import HostPathError
from dirk.workers.snapshots.hostdir import denied_message


@builds("Host", "unixSocket")
async def host_unix_socket(ctx: RequestContext, parent: Handle | None, args: Args) -> Socket:
    path = ctx.host_checked(host_path(ctx.workdir, args["path"]))
    mode = await ctx.host.run(owner_socket_mode, path)
    if mode is None or not stat.S_ISSOCK(mode):
        what = "does not exist" if mode is None else "is not a unix socket"
        raise HostPathError(
            f"host socket {path} {what} (asked for {args['path']!r}; for an SSH agent, pass "
            "the value of $SSH_AUTH_SOCK)"
        )
    return Socket(str(path))


def owner_socket_mode(path: Path) -> int | None:
    """The mode of `path` (None when missing), once the session's owner has shown it may
    connect to it if it is a socket: the engine (root) forwards it to git and into
    containers, or talks to what serves it, where its permissions no longer hold anyone
    back. Run it in the owner's host-access thread (`ctx.host.run`)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    # Connecting needs write permission on the socket; checked with this thread's (the
    # owner's) credentials, without connecting (a probe would take a connection).
    if stat.S_ISSOCK(mode) and not os.access(path, os.W_OK, effective_ids=True):
        raise HostPathError(denied_message(path))
    return mode


def _ctr(parent: Handle | None) -> Container:
    assert parent is not None and isinstance(parent.value, Container)
    return parent.value


def _target(c: Container, args: Args) -> str:
    raw: str = args["path"]
    if args.get("expand"):
        raw = expand(raw, dict(c.env))
    return container_path(c.workdir, raw)


@builds("Container", "withUnixSocket")
async def container_with_unix_socket(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Container:
    c = _ctr(parent)
    socket = ctx.load(args["source"], "Socket").value
    assert isinstance(socket, Socket)
    owner = args.get("owner") or ""
    return with_mount(c, Mount(_target(c, args), "socket", socket=socket, owner=owner))


@builds("Container", "withoutUnixSocket")
async def container_without_unix_socket(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Container:
    c = _ctr(parent)
    target = _target(c, args)
    kept = tuple(m for m in c.mounts if not (m.kind == "socket" and m.target == target))
    return attrs.evolve(c, mounts=kept)
