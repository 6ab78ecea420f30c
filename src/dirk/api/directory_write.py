"""The writing side of `Directory` and `File` beyond plain writes: symlinks, timestamps,
owners, several files at once, patches, and changes between two directories. Each call adds
one operation (or a short chain); nothing runs until a leaf asks."""

from __future__ import annotations

import posixpath
from collections.abc import Sequence

from dirk.api.context import RequestContext
from dirk.api.directory import with_file, without
from dirk.api.paths import inside
from dirk.api.registry import Args, builds
from dirk.api.values import Changeset, Directory, File, Handle
from dirk.errors import InvalidArgumentError, PipelineError
from dirk.solver.ops import (
    ApplyChanges,
    ApplyPatch,
    Chown,
    DiffTrees,
    MkFile,
    Ref,
    Scratch,
    SetTimestamps,
    Symlink,
)

# --- operations on values (shared with Container) ----------------------------------------------


def with_symlink(d: Directory, target: str, link_name: str) -> Directory:
    return Directory(Ref(Symlink(d.ref, target, inside(d.subdir, link_name))), d.subdir)


def with_files(
    d: Directory, path: str, sources: Sequence[File], mode: int | None = None, owner: str = ""
) -> Directory:
    """Each source copied into directory `path` under its own name."""
    for source in sources:
        name = posixpath.basename(source.path)
        d = with_file(d, posixpath.join(path, name), source, mode, owner)
    return d


def without_paths(d: Directory, paths: Sequence[str]) -> Directory:
    for path in paths:
        d = without(d, path)
    return d


def with_patch_file(d: Directory, patch: File) -> Directory:
    return Directory(Ref(ApplyPatch(d.ref, d.subdir, patch.ref, patch.path)), d.subdir)


def with_patch(d: Directory, patch: str) -> Directory:
    staged = MkFile(Ref(Scratch()), "/patch.diff", patch.encode())
    return with_patch_file(d, File(Ref(staged), staged.path))


def compared(before: Directory, after: Directory, kind: str) -> Ref:
    op = DiffTrees(before.ref, before.subdir, after.ref, after.subdir, kind)  # type: ignore[arg-type]
    return Ref(op)


def with_changes(d: Directory, changes: Changeset) -> Directory:
    b, a = changes.before, changes.after
    op = ApplyChanges(d.ref, d.subdir, b.ref, b.subdir, a.ref, a.subdir)
    return Directory(Ref(op), d.subdir)


def _timestamp(args: Args) -> int:
    value: int = args["timestamp"]
    if value < 0:
        raise InvalidArgumentError(
            f"withTimestamps: timestamp must be seconds since 1970 (not negative), got {value}"
        )
    return value


def raise_if_error(message: str) -> None:
    """Dagger's `withError`: a non-empty message fails the call, an empty one is ignored."""
    if message:
        raise PipelineError(message)


# --- resolvers ---------------------------------------------------------------------------------


def _dir(parent: Handle | None) -> Directory:
    assert parent is not None and isinstance(parent.value, Directory)
    return parent.value


def _file(parent: Handle | None) -> File:
    assert parent is not None and isinstance(parent.value, File)
    return parent.value


def _files(ctx: RequestContext, ids: Sequence[str]) -> list[File]:
    files = []
    for file_id in ids:
        value = ctx.load(file_id, "File").value
        assert isinstance(value, File)
        files.append(value)
    return files


@builds("Directory", "withSymlink")
async def directory_with_symlink(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Directory:
    return with_symlink(_dir(parent), args["target"], args["linkName"])


@builds("Directory", "withTimestamps")
async def directory_with_timestamps(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Directory:
    d = _dir(parent)
    return Directory(Ref(SetTimestamps(d.ref, d.subdir, _timestamp(args))), d.subdir)


@builds("Directory", "chown")
async def directory_chown(ctx: RequestContext, parent: Handle | None, args: Args) -> Directory:
    d = _dir(parent)
    if not args["owner"]:
        raise InvalidArgumentError("chown: owner must not be empty (use `uid[:gid]` or names)")
    return Directory(Ref(Chown(d.ref, inside(d.subdir, args["path"]), args["owner"])), d.subdir)


@builds("Directory", "withFiles")
async def directory_with_files(ctx: RequestContext, parent: Handle | None, args: Args) -> Directory:
    return with_files(_dir(parent), args["path"], _files(ctx, args["sources"]), args["permissions"])


@builds("Directory", "withoutFiles")
async def directory_without_files(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Directory:
    return without_paths(_dir(parent), args["paths"])


@builds("Directory", "withPatch")
async def directory_with_patch(ctx: RequestContext, parent: Handle | None, args: Args) -> Directory:
    return with_patch(_dir(parent), args["patch"])


@builds("Directory", "withPatchFile")
async def directory_with_patch_file(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Directory:
    patch = ctx.load(args["patch"], "File").value
    assert isinstance(patch, File)
    return with_patch_file(_dir(parent), patch)


def _other(ctx: RequestContext, args: Args, name: str) -> Directory:
    other = ctx.load(args[name], "Directory").value
    assert isinstance(other, Directory)
    return other


@builds("Directory", "diff")
async def directory_diff(ctx: RequestContext, parent: Handle | None, args: Args) -> Directory:
    return Directory(compared(_dir(parent), _other(ctx, args, "other"), "layer"), "/")


@builds("Directory", "changes")
async def directory_changes(ctx: RequestContext, parent: Handle | None, args: Args) -> Changeset:
    return Changeset(before=_other(ctx, args, "from"), after=_dir(parent))


@builds("Directory", "withChanges")
async def directory_with_changes(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Directory:
    changes = ctx.load(args["changes"], "Changeset").value
    assert isinstance(changes, Changeset)
    return with_changes(_dir(parent), changes)


@builds("Directory", "withError")
async def directory_with_error(ctx: RequestContext, parent: Handle | None, args: Args) -> Directory:
    raise_if_error(args["err"])
    return _dir(parent)


@builds("File", "withTimestamps")
async def file_with_timestamps(ctx: RequestContext, parent: Handle | None, args: Args) -> File:
    f = _file(parent)
    return File(Ref(SetTimestamps(f.ref, f.path, _timestamp(args))), f.path)


@builds("File", "chown")
async def file_chown(ctx: RequestContext, parent: Handle | None, args: Args) -> File:
    f = _file(parent)
    if not args["owner"]:
        raise InvalidArgumentError("chown: owner must not be empty (use `uid[:gid]` or names)")
    return File(Ref(Chown(f.ref, f.path, args["owner"])), f.path)
