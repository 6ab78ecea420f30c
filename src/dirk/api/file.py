"""`File`: one file inside a snapshot; its leaves read it through the solver."""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING

from dirk.api.context import RequestContext
from dirk.api.ids import format_id
from dirk.api.registry import Args, leaf
from dirk.api.values import File, Handle
from dirk.errors import SnapshotPathError

if TYPE_CHECKING:
    from dirk.workers.snapshots.snapshotter import FileInfo


def _file(parent: Handle | None) -> File:
    assert parent is not None and isinstance(parent.value, File)
    return parent.value


async def stat_file(ctx: RequestContext, f: File) -> FileInfo:
    """The file's metadata; an error unless it exists and is a regular file (or a link)."""
    info = await ctx.solver.stat(f.ref, f.path)
    if info is None:
        raise SnapshotPathError(f"file {f.path} does not exist")
    if info.kind == "dir":
        raise SnapshotPathError(f"{f.path} is a directory, not a file")
    return info


def select_lines(text: str, offset: int | None, limit: int | None) -> str:
    """Lines `offset` .. `offset + limit` of `text`, each with its line ending."""
    if offset is None and limit is None:
        return text
    lines = text.splitlines(keepends=True)
    start = max(offset or 0, 0)
    end = None if limit is None else start + max(limit, 0)
    return "".join(lines[start:end])


@leaf("File", "contents")
async def file_contents(ctx: RequestContext, parent: Handle | None, args: Args) -> str:
    f = _file(parent)
    data = await ctx.solver.read_file(f.ref, f.path)
    text = data.decode("utf-8", errors="replace")
    return select_lines(text, args.get("offsetLines"), args.get("limitLines"))


@leaf("File", "name", memo=False)
async def file_name(ctx: RequestContext, parent: Handle | None, args: Args) -> str:
    return posixpath.basename(_file(parent).path)


@leaf("File", "size")
async def file_size(ctx: RequestContext, parent: Handle | None, args: Args) -> int:
    f = _file(parent)
    info = await stat_file(ctx, f)
    if info.kind == "symlink":
        return len(await ctx.solver.read_file(f.ref, f.path))
    return info.size


@leaf("File", "sync")
async def file_sync(ctx: RequestContext, parent: Handle | None, args: Args) -> str:
    assert parent is not None
    await stat_file(ctx, _file(parent))
    return format_id(parent.type_name, parent.ident)
