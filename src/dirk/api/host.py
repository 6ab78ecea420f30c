"""`Host`: the machine the session was started from. Paths resolve against the session's
working directory and are checked when the call is made; the solver reads and hashes the
content when something needs it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import anyio.to_thread

from dirk.api.context import RequestContext
from dirk.api.directory import gitignore_unsupported
from dirk.api.registry import Args, builds
from dirk.api.values import Directory, File, Handle, Host
from dirk.errors import HostPathError
from dirk.solver.ops import HostDirectory, HostFile, Ref

HostKind = Literal["directory", "file"]


def host_path(workdir: Path, path: str) -> Path:
    """`path` made absolute against `workdir` (the session's) and normalised. `~` is not
    expanded: the engine does not know the client's home directory."""
    if not path:
        raise HostPathError("a host path must not be empty: use '.' for the working directory")
    return Path(os.path.normpath(workdir / path))


@builds("Query", "host")
async def query_host(ctx: RequestContext, parent: Handle | None, args: Args) -> Host:
    return Host()


async def _checked(ctx: RequestContext, raw: str, kind: HostKind) -> Path:
    """The host path `raw` names, checked to be a `kind` (in a thread: the session's working
    directory may be on a slow or network filesystem)."""
    path = host_path(ctx.workdir, raw)
    is_kind = path.is_dir if kind == "directory" else path.is_file
    found, exists = await anyio.to_thread.run_sync(lambda: (is_kind(), path.exists()))
    if not found:
        what = "does not exist"
        if exists:
            what = "is not a directory" if kind == "directory" else "is not a regular file"
        raise HostPathError(
            f"host {kind} {path} {what} (asked for {raw!r}, relative to the session's "
            f"working directory {ctx.workdir})"
        )
    return path


@builds("Host", "directory")
async def host_directory(ctx: RequestContext, parent: Handle | None, args: Args) -> Directory:
    gitignore_unsupported(args)
    path = await _checked(ctx, args["path"], "directory")
    op = HostDirectory(
        str(path), include=tuple(args["include"] or ()), exclude=tuple(args["exclude"] or ())
    )
    return Directory(Ref(op), "/")


@builds("Host", "file")
async def host_file(ctx: RequestContext, parent: Handle | None, args: Args) -> File:
    path = await _checked(ctx, args["path"], "file")
    return File(Ref(HostFile(str(path))), "/" + path.name)
