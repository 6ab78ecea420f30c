"""`Container.terminal`, `Directory.terminal` and `Service.terminal`: a shell on the user's
terminal.

The shell runs in the container as an exec would (same root, mounts, environment, secrets,
user, working directory, network), but on a pty relayed to the terminal the session's client
holds (`solver.terminal`); nothing it changes is kept, and the field returns its parent as it
was. `Service.terminal` instead starts (or joins) the service and runs the shell inside its
running container, beside its command, with that command's environment and user. Like every
builder, a terminal call is made once per identity in a session (a chain re-sent for each
leaf does not open a second shell); a failed one is tried again.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from dirk.api.container import from_image, require_root_session
from dirk.api.container_ops import default_platform, with_exec, with_mount
from dirk.api.context import RequestContext
from dirk.api.directory import SCRATCH
from dirk.api.ids import format_id
from dirk.api.registry import Args, builds, leaf
from dirk.api.service import _stop_with_session
from dirk.api.values import Container, Directory, Handle, Mount, Service
from dirk.errors import InvalidArgumentError, TerminalError
from dirk.solver.ops import ServiceDef
from dirk.solver.terminal import NO_TERMINAL, TerminalRequest

#: The image `Directory.terminal` opens its shell in when no container is given (Dagger's).
DEFAULT_TERMINAL_IMAGE = "alpine:3"
#: Where `Directory.terminal` mounts the directory, and the shell's working directory.
DIRECTORY_MOUNT = "/src"


async def open_terminal(
    ctx: RequestContext,
    c: Container,
    argv: Sequence[str],
    privileged: bool,
    title: str,
    nesting: bool = False,
) -> int:
    """Run `argv` (as is: no entrypoint) in `c` on the user's terminal; its exit code. With
    `nesting` the shell reaches the engine's API as the session, as a nested exec does."""
    if privileged:
        require_root_session(ctx, f"{title}(insecureRootCapabilities: true)")
    op = with_exec(c, argv, insecure_root_capabilities=privileged, nesting=nesting).last_exec
    assert op is not None
    return await ctx.solver.interactive(ctx.job, op, TerminalRequest(title, tuple(argv)))


def _require_terminal(ctx: RequestContext) -> None:
    """Fail before anything is built when no client holds a terminal."""
    terminals = ctx.job.terminals
    if terminals is None or not terminals.attached:
        raise TerminalError(NO_TERMINAL)


@builds("Container", "terminal")
async def container_terminal(ctx: RequestContext, parent: Handle | None, args: Args) -> Container:
    assert parent is not None and isinstance(parent.value, Container)
    c = parent.value
    _require_terminal(ctx)
    cmd: list[str] = list(args["cmd"] or [])
    privileged = bool(args["insecureRootCapabilities"])
    nesting = bool(args["experimentalPrivilegedNesting"])
    default = c.default_terminal_cmd
    if not cmd and default is not None and default.args:
        cmd = list(default.args)
        privileged = privileged or default.insecure_root_capabilities
        nesting = nesting or default.nesting
    await open_terminal(ctx, c, cmd or ["sh"], privileged, "Container.terminal", nesting)
    return c


@builds("Directory", "terminal")
async def directory_terminal(ctx: RequestContext, parent: Handle | None, args: Args) -> Directory:
    assert parent is not None and isinstance(parent.value, Directory)
    directory = parent.value
    _require_terminal(ctx)
    if args.get("container"):
        loaded = ctx.load(args["container"], "Container").value
        assert isinstance(loaded, Container)
        c = loaded
    else:
        scratch = Container(rootfs=SCRATCH, platform=default_platform())
        c = await from_image(ctx, scratch, DEFAULT_TERMINAL_IMAGE)
    mount = Mount(DIRECTORY_MOUNT, "directory", directory=directory, readonly=True)
    c = attrs.evolve(with_mount(c, mount), workdir=DIRECTORY_MOUNT)
    cmd = list(args["cmd"] or []) or ["sh"]
    await open_terminal(
        ctx,
        c,
        cmd,
        bool(args["insecureRootCapabilities"]),
        "Directory.terminal",
        bool(args["experimentalPrivilegedNesting"]),
    )
    return directory


@builds("Service", "terminal")
async def service_terminal(ctx: RequestContext, parent: Handle | None, args: Args) -> Service:
    assert parent is not None and isinstance(parent.value, Service)
    service = parent.value
    definition = service.definition
    if not isinstance(definition, ServiceDef):
        raise InvalidArgumentError(
            "Service.terminal opens a shell in a container's service; this one runs no "
            "container (a host service or a tunnel): open the terminal on the container "
            "that runs what it forwards to"
        )
    _require_terminal(ctx)
    cmd = list(args["cmd"] or []) or list(definition.exec.debug_shell) or ["sh"]
    _stop_with_session(ctx)
    request = TerminalRequest("Service.terminal", tuple(cmd))
    await ctx.solver.service_terminal(ctx.job, definition, cmd, request)
    return service


@leaf("Terminal", "sync", memo=False)
async def terminal_sync(ctx: RequestContext, parent: Handle | None, args: Args) -> str:
    """A terminal has no pipeline of its own: its ID."""
    assert parent is not None
    return format_id(parent.type_name, parent.ident)
