"""`File`: one file inside a snapshot; its leaves read it through the solver."""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING

from dirk.api.context import RequestContext
from dirk.api.ids import format_id
from dirk.api.registry import Args, builds, leaf
from dirk.api.values import File, Handle
from dirk.errors import InvalidArgumentError, SnapshotPathError
from dirk.solver.ops import Copy, MkFile, Ref, Scratch

if TYPE_CHECKING:
    from dirk.workers.snapshots.snapshotter import FileInfo


def _file(parent: Handle | None) -> File:
    assert parent is not None and isinstance(parent.value, File)
    return parent.value


async def stat_file(ctx: RequestContext, f: File) -> FileInfo:
    """The file's metadata; an error unless it exists and is a regular file (or a link)."""
    info = await ctx.solver.stat(ctx.job, f.ref, f.path, follow=True)
    if info is None:
        raise SnapshotPathError(
            f"{f.path}: no such file or directory (check the path: it is taken inside the "
            "directory or container the file was asked of)"
        )
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
    data = await ctx.solver.read_file(ctx.job, f.ref, f.path)
    text = data.decode("utf-8", errors="replace")
    return select_lines(text, args.get("offsetLines"), args.get("limitLines"))


@leaf("File", "name", memo=False)
async def file_name(ctx: RequestContext, parent: Handle | None, args: Args) -> str:
    return posixpath.basename(_file(parent).path)


@leaf("File", "size")
async def file_size(ctx: RequestContext, parent: Handle | None, args: Args) -> int:
    f = _file(parent)
    info = await stat_file(ctx, f)
    return info.size


@leaf("File", "sync")
async def file_sync(ctx: RequestContext, parent: Handle | None, args: Args) -> str:
    assert parent is not None
    await stat_file(ctx, _file(parent))
    return format_id(parent.type_name, parent.ident)


@builds("File", "withName")
async def file_with_name(ctx: RequestContext, parent: Handle | None, args: Args) -> File:
    f = _file(parent)
    name: str = args["name"]
    if not name or "/" in name or name in (".", ".."):
        raise InvalidArgumentError(f"a file name must be one path component, not {name!r}")
    op = Copy(Ref(Scratch()), "/" + name, f.ref, f.path)
    return File(Ref(op), "/" + name)


def replaced(
    data: bytes, search: bytes, replacement: bytes, every: bool, first_from: int | None
) -> bytes:
    """`data` with `search` replaced as `File.withReplaced` asks; errors name what went wrong."""
    if not search:
        raise InvalidArgumentError("withReplaced needs a non-empty search text")
    if every:
        if search not in data:
            raise InvalidArgumentError(f"search text {search.decode(errors='replace')!r} not found")
        return data.replace(search, replacement)
    start = 0
    if first_from is not None:
        if first_from < 1:
            raise InvalidArgumentError(f"firstFrom counts lines from 1, not {first_from}")
        for _ in range(first_from - 1):
            newline = data.find(b"\n", start)
            if newline < 0:
                start = len(data) + 1
                break
            start = newline + 1
    at = data.find(search, start) if start <= len(data) else -1
    shown = search.decode(errors="replace")
    if at < 0:
        where = f" on line {first_from} or after it" if first_from is not None else ""
        raise InvalidArgumentError(f"search text {shown!r} not found{where}")
    if first_from is None and data.find(search, at + len(search)) >= 0:
        raise InvalidArgumentError(
            f"search text {shown!r} is found more than once: pass all: true to replace every "
            "match, or firstFrom: <line> to replace the first one from that line"
        )
    return data[:at] + replacement + data[at + len(search) :]


@builds("File", "withReplaced")
async def file_with_replaced(ctx: RequestContext, parent: Handle | None, args: Args) -> File:
    f = _file(parent)
    info = await stat_file(ctx, f)
    data = await ctx.solver.read_file(ctx.job, f.ref, f.path)
    new = replaced(
        data,
        args["search"].encode(),
        args["replacement"].encode(),
        bool(args["all"]),
        args.get("firstFrom"),
    )
    op = MkFile(f.ref, f.path, new, mode=info.mode, uid=info.uid, gid=info.gid)
    return File(Ref(op), f.path)


@builds("Query", "file")
async def query_file(ctx: RequestContext, parent: Handle | None, args: Args) -> File:
    """A file of the given contents, alone in an empty tree (like `withNewFile` on scratch)."""
    name: str = args["name"]
    if not name or "/" in name or name in (".", ".."):
        raise InvalidArgumentError(
            f"file(name:) takes a file name (one path component), not {name!r}; put it in a "
            "directory with Directory.withNewFile to give it a path"
        )
    op = MkFile(Ref(Scratch()), "/" + name, args["contents"].encode(), mode=args["permissions"])
    return File(Ref(op), "/" + name)
