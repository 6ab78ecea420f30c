"""Reads of directories, files and containers that answer with data: `exists`, `stat`,
`glob`, `search`, `digest`, `name`, `findUp`, and the small objects they return (`Stat`,
`SearchResult`, `SearchSubmatch`). Snapshots are immutable, so each answer is memoised for the
session like any leaf."""

from __future__ import annotations

import posixpath
from collections.abc import Iterable

from dirk.api.container import _path as container_arg_path
from dirk.api.container_ops import _outside_snapshots, locate
from dirk.api.context import RequestContext
from dirk.api.ids import identity
from dirk.api.paths import inside
from dirk.api.registry import Args, leaf
from dirk.api.values import (
    Container,
    Directory,
    File,
    Handle,
    SearchResult,
    SearchSubmatch,
    Stat,
    Value,
)
from dirk.errors import SnapshotPathError
from dirk.solver import reads
from dirk.solver.ops import HostDirectory, Ref
from dirk.workers.snapshots.search import SearchHit, SearchOptions
from dirk.workers.snapshots.snapshotter import FileInfo

_FILE_TYPES = {"file": "REGULAR", "dir": "DIRECTORY", "symlink": "SYMLINK", "other": "UNKNOWN"}
_EXISTS_KINDS = {"REGULAR_TYPE": "file", "DIRECTORY_TYPE": "dir", "SYMLINK_TYPE": "symlink"}


def _dir(parent: Handle | None) -> Directory:
    assert parent is not None and isinstance(parent.value, Directory)
    return parent.value


def _file(parent: Handle | None) -> File:
    assert parent is not None and isinstance(parent.value, File)
    return parent.value


def _ctr(parent: Handle | None) -> Container:
    assert parent is not None and isinstance(parent.value, Container)
    return parent.value


def _child(
    ctx: RequestContext, parent: Handle, field: str, args: Args, type_name: str, value: Value
) -> Handle:
    """The object a leaf returns, named by the call that made it (parent, field, arguments)."""
    return ctx.table.add(Handle(type_name, identity(parent.ident, field, args), value))


def _items(
    ctx: RequestContext,
    parent: Handle,
    field: str,
    args: Args,
    type_name: str,
    values: Iterable[Value],
) -> list[Handle]:
    return [
        ctx.table.add(
            Handle(type_name, identity(parent.ident, field, {**args, "(index)": i}), value)
        )
        for i, value in enumerate(values)
    ]


# --- exists and stat ---------------------------------------------------------------------------


async def _info(ctx: RequestContext, ref: Ref, path: str, follow: bool) -> FileInfo | None:
    return await ctx.solver.stat(ctx.job, ref, path, follow=follow)


async def exists_at(ctx: RequestContext, ref: Ref, path: str, args: Args) -> bool:
    info = await _info(ctx, ref, path, not args["doNotFollowSymlinks"])
    if info is None:
        return False
    wanted = args.get("expectedType")
    return wanted is None or _EXISTS_KINDS[wanted] == info.kind


async def stat_at(ctx: RequestContext, ref: Ref, path: str, shown: str, follow: bool) -> Stat:
    info = await _info(ctx, ref, path, follow)
    if info is None:
        raise reads.missing(shown)
    name = posixpath.basename(path.rstrip("/")) or "/"
    return Stat(_FILE_TYPES[info.kind], name, info.mode, info.size)


@leaf("Directory", "exists")
async def directory_exists(ctx: RequestContext, parent: Handle | None, args: Args) -> bool:
    d = _dir(parent)
    return await exists_at(ctx, d.ref, inside(d.subdir, args["path"]), args)


@leaf("Directory", "stat")
async def directory_stat(ctx: RequestContext, parent: Handle | None, args: Args) -> Handle:
    assert parent is not None
    d = _dir(parent)
    full = inside(d.subdir, args["path"])
    info = await stat_at(ctx, d.ref, full, args["path"], not args["doNotFollowSymlinks"])
    return _child(ctx, parent, "stat", args, "Stat", info)


@leaf("File", "stat")
async def file_stat(ctx: RequestContext, parent: Handle | None, args: Args) -> Handle:
    assert parent is not None
    f = _file(parent)
    info = await stat_at(ctx, f.ref, f.path, f.path, True)
    return _child(ctx, parent, "stat", args, "Stat", info)


def _container_target(c: Container, path: str) -> tuple[Ref, str]:
    """The snapshot and path inside it that a container path shows."""
    m, rel = locate(c, path)
    if m is None:
        return c.rootfs.ref, inside(c.rootfs.subdir, path)
    if m.kind == "directory":
        assert m.directory is not None
        return m.directory.ref, inside(m.directory.subdir, rel or ".")
    if m.kind == "file" and rel == "":
        assert m.file is not None
        return m.file.ref, m.file.path
    raise _outside_snapshots(path, m, "read")


@leaf("Container", "exists")
async def container_exists(ctx: RequestContext, parent: Handle | None, args: Args) -> bool:
    c = _ctr(parent)
    ref, path = _container_target(c, container_arg_path(c, args))
    return await exists_at(ctx, ref, path, args)


@leaf("Container", "stat")
async def container_stat(ctx: RequestContext, parent: Handle | None, args: Args) -> Handle:
    assert parent is not None
    c = _ctr(parent)
    full = container_arg_path(c, args)
    ref, path = _container_target(c, full)
    info = await stat_at(ctx, ref, path, full, not args["doNotFollowSymlinks"])
    return _child(ctx, parent, "stat", args, "Stat", info)


# --- names, digests, glob, findUp --------------------------------------------------------------


@leaf("Directory", "name", memo=False)
async def directory_name(ctx: RequestContext, parent: Handle | None, args: Args) -> str:
    d = _dir(parent)
    if d.subdir != "/":
        return posixpath.basename(d.subdir) + "/"
    if isinstance(d.ref.op, HostDirectory):
        return posixpath.basename(d.ref.op.path.rstrip("/")) + "/"
    return "/"


@leaf("Directory", "digest")
async def directory_digest(ctx: RequestContext, parent: Handle | None, args: Args) -> str:
    d = _dir(parent)
    return await reads.tree_digest(ctx.solver, ctx.job, d.ref, d.subdir)


@leaf("File", "digest")
async def file_digest(ctx: RequestContext, parent: Handle | None, args: Args) -> str:
    f = _file(parent)
    return await reads.file_digest(
        ctx.solver, ctx.job, f.ref, f.path, metadata=not args["excludeMetadata"]
    )


@leaf("Directory", "glob")
async def directory_glob(ctx: RequestContext, parent: Handle | None, args: Args) -> list[str]:
    d = _dir(parent)
    return await reads.glob(ctx.solver, ctx.job, d.ref, d.subdir, args["pattern"])


@leaf("Directory", "findUp")
async def directory_find_up(ctx: RequestContext, parent: Handle | None, args: Args) -> str | None:
    d = _dir(parent)
    name: str = args["name"]
    if not name or "/" in name or name in (".", ".."):
        raise SnapshotPathError(f"findUp needs a plain file name, not {name!r}")
    start = inside(d.subdir, args["start"])
    while True:
        candidate = inside(start, name)
        if await ctx.solver.stat(ctx.job, d.ref, candidate) is not None:
            rel = candidate[len(d.subdir) :] if d.subdir != "/" else candidate
            return rel.lstrip("/")
        if start == d.subdir:
            return None
        start = posixpath.dirname(start)


# --- search ------------------------------------------------------------------------------------


def _options(args: Args) -> SearchOptions:
    return SearchOptions(
        pattern=args["pattern"],
        literal=args["literal"],
        multiline=args["multiline"],
        dotall=args["dotall"],
        insensitive=args["insensitive"],
        skip_ignored=args["skipIgnored"],
        skip_hidden=args["skipHidden"],
        files_only=args["filesOnly"],
        limit=args.get("limit"),
        globs=tuple(args["globs"] or ()),
    )


def _results(
    ctx: RequestContext, parent: Handle, args: Args, hits: list[SearchHit]
) -> list[Handle]:
    values = [
        SearchResult(
            h.file_path,
            h.line_number,
            h.absolute_offset,
            h.matched_lines,
            tuple(SearchSubmatch(s.start, s.end, s.text) for s in h.submatches),
        )
        for h in hits
    ]
    return _items(ctx, parent, "search", args, "SearchResult", values)


@leaf("Directory", "search")
async def directory_search(ctx: RequestContext, parent: Handle | None, args: Args) -> list[Handle]:
    assert parent is not None
    d = _dir(parent)
    paths = list(args["paths"] or ())
    hits = await reads.search_tree(ctx.solver, ctx.job, d.ref, d.subdir, paths, _options(args))
    return _results(ctx, parent, args, hits)


@leaf("File", "search")
async def file_search(ctx: RequestContext, parent: Handle | None, args: Args) -> list[Handle]:
    assert parent is not None
    f = _file(parent)
    hits = await reads.search_file(ctx.solver, ctx.job, f.ref, f.path, _options(args))
    return _results(ctx, parent, args, hits)


@leaf("SearchResult", "submatches")
async def search_result_submatches(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> list[Handle]:
    assert parent is not None and isinstance(parent.value, SearchResult)
    return _items(ctx, parent, "submatches", args, "SearchSubmatch", parent.value.submatches)


def _attribute_leaf(type_name: str, field: str, attribute: str) -> None:
    async def resolve(ctx: RequestContext, parent: Handle | None, args: Args) -> object:
        assert parent is not None
        return getattr(parent.value, attribute)

    leaf(type_name, field, memo=False)(resolve)


for _type, _field, _attribute in (
    ("Stat", "fileType", "file_type"),
    ("Stat", "name", "name"),
    ("Stat", "permissions", "permissions"),
    ("Stat", "size", "size"),
    ("SearchResult", "filePath", "file_path"),
    ("SearchResult", "lineNumber", "line_number"),
    ("SearchResult", "absoluteOffset", "absolute_offset"),
    ("SearchResult", "matchedLines", "matched_lines"),
    ("SearchSubmatch", "start", "start"),
    ("SearchSubmatch", "end", "end"),
    ("SearchSubmatch", "text", "text"),
):
    _attribute_leaf(_type, _field, _attribute)
