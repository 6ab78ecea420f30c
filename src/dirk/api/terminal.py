"""`Container.terminal` and `Directory.terminal`: a shell on the user's terminal.

The shell runs in the container as an exec would (same root, mounts, environment, secrets,
user, working directory, network), but on a pty relayed to the terminal the session's client
holds (`solver.terminal`); nothing it changes is kept, and the field returns its parent as it
was. Like every builder, a terminal call is made once per identity in a session (a chain
re-sent for each leaf does not open a second shell); a failed one is tried again.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from dirk.api.container import from_image, require_root_session
from dirk.api.container_ops import default_platform, with_exec, with_mount
from dirk.api.context import RequestContext
from dirk.api.directory import SCRATCH
from dirk.api.registry import Args, builds
from dirk.api.values import Container, Directory, Handle, Mount
from dirk.errors import TerminalError
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
