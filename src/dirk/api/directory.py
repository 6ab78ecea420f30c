"""`Directory`: a tree inside a snapshot. Each `with*` call adds one file operation; reads
(`entries`, `sync`) solve the snapshot."""

from __future__ import annotations

import posixpath
from collections.abc import Sequence

from dirk.api.context import RequestContext
from dirk.api.ids import format_id
from dirk.api.paths import inside
from dirk.api.registry import Args, builds, leaf
from dirk.api.values import Directory, File, Handle
from dirk.errors import SnapshotPathError
from dirk.solver.ops import Copy, MkDir, MkFile, Ref, Remove, Scratch

SCRATCH = Directory(Ref(Scratch()), "/")


# --- operations on values (shared with Container) ----------------------------------------------


def subdirectory(d: Directory, path: str) -> Directory:
    return Directory(d.ref, inside(d.subdir, path))


def file_in(d: Directory, path: str) -> File:
    full = inside(d.subdir, path)
    if full == d.subdir:
        raise SnapshotPathError(f"{path!r} names the directory itself, not a file in it")
    return File(d.ref, full)


def with_new_file(
    d: Directory, path: str, contents: bytes, mode: int = 0o644, owner: str = ""
) -> Directory:
    full = inside(d.subdir, path)
    uid_gid = _numeric_owner(owner)
    if not owner or uid_gid is not None:
        uid, gid = uid_gid or (0, 0)
        op = MkFile(d.ref, full, contents, mode=mode, uid=uid, gid=gid)
        return Directory(Ref(op), d.subdir)
    # A named owner is resolved against the target's /etc/passwd by a copy.
    staged = MkFile(Ref(Scratch()), "/" + posixpath.basename(full), contents, mode=mode)
    return with_file(d, path, File(Ref(staged), staged.path), owner=owner)


def with_file(
    d: Directory, path: str, source: File, mode: int | None = None, owner: str = ""
) -> Directory:
    op = Copy(
        d.ref,
        inside(d.subdir, path),
        source.ref,
        source.path,
        owner=owner,
        mode=mode,
    )
    return Directory(Ref(op), d.subdir)


def with_directory(
    d: Directory,
    path: str,
    source: Directory,
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    gitignore: bool = False,
    owner: str = "",
    mode: int | None = None,
) -> Directory:
    op = Copy(
        d.ref,
        inside(d.subdir, path),
        source.ref,
        source.subdir,
        include=tuple(include),
        exclude=tuple(exclude),
        owner=owner,
        mode=mode,
        gitignore=gitignore,
    )
    return Directory(Ref(op), d.subdir)


def with_new_directory(d: Directory, path: str, mode: int = 0o755) -> Directory:
    return Directory(Ref(MkDir(d.ref, inside(d.subdir, path), mode)), d.subdir)


def without(d: Directory, path: str) -> Directory:
    full = inside(d.subdir, path)
    if full == d.subdir:
        raise SnapshotPathError(f"{path!r} names the directory itself: it cannot remove itself")
    return Directory(Ref(Remove(d.ref, full)), d.subdir)


def rebased(d: Directory) -> Ref:
    """A snapshot whose root is `d` (itself when `d` is a snapshot's root)."""
    if d.subdir == "/":
        return d.ref
    return Ref(Copy(Ref(Scratch()), "/", d.ref, d.subdir))


def _numeric_owner(owner: str) -> tuple[int, int] | None:
    user, _, group = owner.partition(":")
    if user.isdigit() and (not group or group.isdigit()):
        return int(user), int(group or user)
    return None


# --- resolvers ---------------------------------------------------------------------------------


def _dir(parent: Handle | None) -> Directory:
    assert parent is not None and isinstance(parent.value, Directory)
    return parent.value


@builds("Query", "directory")
async def query_directory(ctx: RequestContext, parent: Handle | None, args: Args) -> Directory:
    return SCRATCH


@builds("Directory", "directory")
async def directory_directory(ctx: RequestContext, parent: Handle | None, args: Args) -> Directory:
    return subdirectory(_dir(parent), args["path"])


@builds("Directory", "file")
async def directory_file(ctx: RequestContext, parent: Handle | None, args: Args) -> File:
    return file_in(_dir(parent), args["path"])


@builds("Directory", "withNewFile")
async def directory_with_new_file(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Directory:
    return with_new_file(_dir(parent), args["path"], args["contents"].encode(), args["permissions"])


@builds("Directory", "withFile")
async def directory_with_file(ctx: RequestContext, parent: Handle | None, args: Args) -> Directory:
    source = ctx.load(args["source"], "File").value
    assert isinstance(source, File)
    return with_file(_dir(parent), args["path"], source, args["permissions"], args["owner"])


@builds("Directory", "withDirectory")
async def directory_with_directory(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Directory:
    source = ctx.load(args["source"], "Directory").value
    assert isinstance(source, Directory)
    return with_directory(
        _dir(parent),
        args["path"],
        source,
        include=args["include"] or (),
        exclude=args["exclude"] or (),
        gitignore=bool(args["gitignore"]),
        owner=args["owner"],
        mode=args["permissions"],
    )


@builds("Directory", "filter")
async def directory_filter(ctx: RequestContext, parent: Handle | None, args: Args) -> Directory:
    d = _dir(parent)
    op = Copy(
        Ref(Scratch()),
        "/",
        d.ref,
        d.subdir,
        include=tuple(args["include"] or ()),
        exclude=tuple(args["exclude"] or ()),
        gitignore=bool(args["gitignore"]),
    )
    return Directory(Ref(op), "/")


@builds("Directory", "withNewDirectory")
async def directory_with_new_directory(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Directory:
    return with_new_directory(_dir(parent), args["path"], args["permissions"])


@builds("Directory", "withoutFile")
async def directory_without_file(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Directory:
    return without(_dir(parent), args["path"])


@builds("Directory", "withoutDirectory")
async def directory_without_directory(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Directory:
    return without(_dir(parent), args["path"])


async def list_entries(ctx: RequestContext, d: Directory, path: str | None) -> list[str]:
    """The sorted names in `path` of `d`; directories end with "/" as in Dagger >= 0.13."""
    full = inside(d.subdir, path or ".")
    entries = await ctx.solver.list_entries(ctx.job, d.ref, full)
    return [name + "/" if kind == "dir" else name for name, kind in entries]


@leaf("Directory", "entries")
async def directory_entries(ctx: RequestContext, parent: Handle | None, args: Args) -> list[str]:
    return await list_entries(ctx, _dir(parent), args.get("path"))


async def sync_directory(ctx: RequestContext, d: Directory) -> None:
    await ctx.solver.solve(ctx.job, d.ref)
    if d.subdir != "/":
        info = await ctx.solver.stat(ctx.job, d.ref, d.subdir)
        if info is None:
            raise SnapshotPathError(
                f"{d.subdir}: no such file or directory (check the path: it is taken inside "
                "the directory or container it is asked of)"
            )


@leaf("Directory", "sync")
async def directory_sync(ctx: RequestContext, parent: Handle | None, args: Args) -> str:
    assert parent is not None
    await sync_directory(ctx, _dir(parent))
    return format_id(parent.type_name, parent.ident)
