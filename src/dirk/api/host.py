"""`Host`: the machine the session was started from. Paths resolve against the session's
working directory and are checked when the call is made; the solver reads and hashes the
content when something needs it."""

from __future__ import annotations

import os
from pathlib import Path

from dirk.api.context import RequestContext
from dirk.api.directory import gitignore_unsupported
from dirk.api.registry import Args, builds
from dirk.api.values import Directory, File, Handle, Host
from dirk.errors import HostPathError
from dirk.solver.ops import HostDirectory, HostFile, Ref


def host_path(workdir: Path, path: str) -> Path:
    """`path` made absolute against `workdir` (the session's) and normalised. `~` is not
    expanded: the engine does not know the client's home directory."""
    if not path:
        raise HostPathError("a host path must not be empty: use '.' for the working directory")
    return Path(os.path.normpath(workdir / path))


@builds("Query", "host")
async def query_host(ctx: RequestContext, parent: Handle | None, args: Args) -> Host:
    return Host()


@builds("Host", "directory")
async def host_directory(ctx: RequestContext, parent: Handle | None, args: Args) -> Directory:
    gitignore_unsupported(args)
    path = host_path(ctx.workdir, args["path"])
    if not path.is_dir():
        what = "is not a directory" if path.exists() else "does not exist"
        raise HostPathError(
            f"host directory {path} {what} (asked for {args['path']!r}, relative to the "
            f"session's working directory {ctx.workdir})"
        )
    op = HostDirectory(
        str(path), include=tuple(args["include"] or ()), exclude=tuple(args["exclude"] or ())
    )
    return Directory(Ref(op), "/")


@builds("Host", "file")
async def host_file(ctx: RequestContext, parent: Handle | None, args: Args) -> File:
    path = host_path(ctx.workdir, args["path"])
    if not path.is_file():
        what = "is not a regular file" if path.exists() else "does not exist"
        raise HostPathError(
            f"host file {path} {what} (asked for {args['path']!r}, relative to the "
            f"session's working directory {ctx.workdir})"
        )
    return File(Ref(HostFile(str(path))), "/" + path.name)
