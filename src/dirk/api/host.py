"""`Host`: the machine the session was started from. Paths resolve against the session's
working directory and are checked when the call is made; the solver reads and hashes the
content when something needs it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from dirk.api.context import RequestContext
from dirk.api.registry import Args, builds, leaf
from dirk.api.values import Directory, File, Handle, Host
from dirk.errors import HostPathError
from dirk.solver import reads
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


async def _checked(ctx: RequestContext, raw: str, kind: Literal["directory", "file"]) -> Path:
    """The host path `raw` names, checked to be a `kind` (in a thread: the session's working
    directory may be on a slow or network filesystem)."""
    path = ctx.host_checked(host_path(ctx.workdir, raw))
    found = await reads.host_kind(ctx.host, path)
    if found == "missing":
        raise HostPathError(
            f"{path}: no such file or directory (asked for {raw!r}, relative to the session's "
            f"working directory {ctx.workdir}): check the path"
        )
    if found != kind:
        what = "is not a directory" if kind == "directory" else "is not a regular file"
        other = "file" if kind == "directory" else "directory"
        raise HostPathError(
            f"host path {path} {what} (asked for {raw!r}, relative to the session's "
            f"working directory {ctx.workdir}): use Host.{other} for what is there"
        )
    return path


@builds("Host", "directory", fresh_when="noCache")
async def host_directory(ctx: RequestContext, parent: Handle | None, args: Args) -> Directory:
    path = await _checked(ctx, args["path"], "directory")
    op = HostDirectory(
        str(path),
        include=tuple(args["include"] or ()),
        exclude=tuple(args["exclude"] or ()),
        gitignore=bool(args["gitignore"]),
        owner=ctx.host_owner,
    )
    return Directory(Ref(op), "/")


@builds("Host", "file", fresh_when="noCache")
async def host_file(ctx: RequestContext, parent: Handle | None, args: Args) -> File:
    path = await _checked(ctx, args["path"], "file")
    return File(Ref(HostFile(str(path), owner=ctx.host_owner)), "/" + path.name)


@leaf("Host", "findUp", memo=False)
async def host_find_up(ctx: RequestContext, parent: Handle | None, args: Args) -> str | None:
    found = await reads.find_up(ctx.host, ctx.workdir, args["name"])
    return None if found is None else str(found)
