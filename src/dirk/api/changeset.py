"""`Changeset`: the changes from one directory (`before`) to another (`after`).

Its fields are comparisons of the two trees (`DiffTrees` operations, cached like any other
step): the path lists and line counts come from a small JSON file such an operation writes,
`asPatch` from `git diff`, `layer` is a tree of the added and modified files.
"""

from __future__ import annotations

import json
from typing import Any

from dirk.api.context import RequestContext
from dirk.api.directory import SCRATCH, sync_directory, with_directory, without
from dirk.api.directory_write import compared
from dirk.api.host import host_path
from dirk.api.ids import format_id, identity
from dirk.api.registry import Args, builds, leaf
from dirk.api.values import Changeset, DiffStat, Directory, File, Handle
from dirk.solver import reads
from dirk.solver.ops import ChangeSide, MergeChanges, Ref
from dirk.solver.treeops import CHANGES_FILE, PATCH_FILE


def _changes(parent: Handle | None) -> Changeset:
    assert parent is not None and isinstance(parent.value, Changeset)
    return parent.value


async def _summary(ctx: RequestContext, c: Changeset, kind: str = "paths") -> dict[str, Any]:
    data = await ctx.solver.read_file(ctx.job, compared(c.before, c.after, kind), CHANGES_FILE)
    summary: dict[str, Any] = json.loads(data)
    return summary


@builds("Query", "changeset")
async def query_changeset(ctx: RequestContext, parent: Handle | None, args: Args) -> Changeset:
    return Changeset(before=SCRATCH, after=SCRATCH)


@leaf("Changeset", "addedPaths")
async def changeset_added_paths(ctx: RequestContext, parent: Handle | None, args: Args) -> Any:
    return (await _summary(ctx, _changes(parent)))["added"]


@leaf("Changeset", "modifiedPaths")
async def changeset_modified_paths(ctx: RequestContext, parent: Handle | None, args: Args) -> Any:
    return (await _summary(ctx, _changes(parent)))["modified"]


@leaf("Changeset", "removedPaths")
async def changeset_removed_paths(ctx: RequestContext, parent: Handle | None, args: Args) -> Any:
    return (await _summary(ctx, _changes(parent)))["removed"]


@leaf("Changeset", "isEmpty")
async def changeset_is_empty(ctx: RequestContext, parent: Handle | None, args: Args) -> bool:
    c = _changes(parent)
    if c.before == c.after:
        return True
    summary = await _summary(ctx, c)
    return not (summary["added"] or summary["modified"] or summary["all_removed"])


@builds("Changeset", "before")
async def changeset_before(ctx: RequestContext, parent: Handle | None, args: Args) -> Directory:
    return _changes(parent).before


@builds("Changeset", "after")
async def changeset_after(ctx: RequestContext, parent: Handle | None, args: Args) -> Directory:
    return _changes(parent).after


@builds("Changeset", "layer")
async def changeset_layer(ctx: RequestContext, parent: Handle | None, args: Args) -> Directory:
    c = _changes(parent)
    return Directory(compared(c.before, c.after, "layer"), "/")


@builds("Changeset", "asPatch")
async def changeset_as_patch(ctx: RequestContext, parent: Handle | None, args: Args) -> File:
    c = _changes(parent)
    return File(compared(c.before, c.after, "patch"), PATCH_FILE)


@leaf("Changeset", "diffStats")
async def changeset_diff_stats(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> list[Handle]:
    assert parent is not None
    summary = await _summary(ctx, _changes(parent), "stats")
    lines: dict[str, list[int]] = summary["lines"]
    stats: list[DiffStat] = []
    for key, kind in (("added", "ADDED"), ("modified", "MODIFIED"), ("all_removed", "REMOVED")):
        for path in summary[key]:
            added, removed = lines.get(path, (0, 0))
            stats.append(DiffStat(path, kind, added, removed))  # type: ignore[arg-type]
    stats.sort(key=lambda s: s.path)
    handles = []
    for index, stat in enumerate(stats):
        ident = identity(parent.ident, "diffStats", {"index": index})
        handles.append(ctx.table.add(Handle("DiffStat", ident, stat)))
    return handles


@leaf("Changeset", "export", memo=False)
async def changeset_export(ctx: RequestContext, parent: Handle | None, args: Args) -> str:
    """The changes applied to a host directory: what `after` removed is removed there, what
    it added or modified is written (the rest of the host directory stays)."""
    c = _changes(parent)
    dest = host_path(ctx.workdir, args["path"])
    summary = await _summary(ctx, c)
    layer = compared(c.before, c.after, "layer")
    return str(await reads.export_changes(ctx.solver, ctx.job, layer, summary["removed"], dest))


@leaf("Changeset", "sync")
async def changeset_sync(ctx: RequestContext, parent: Handle | None, args: Args) -> str:
    assert parent is not None
    c = _changes(parent)
    await sync_directory(ctx, c.before)
    await sync_directory(ctx, c.after)
    return format_id(parent.type_name, parent.ident)


def merged(ours: Changeset, others: list[Changeset], on_conflict: str) -> Changeset:
    """`ours` with `others` merged in (Dagger's withChangeset(s)): the new `before` is every
    `before` copied over the first (repeats in a row once, no `.git`), the new `after` is
    that tree with every changeset's patch merged in by git."""
    if not others:
        return ours
    before = ours.before
    previous = ours.before
    for other in others:
        if other.before != previous:
            before = with_directory(before, ".", other.before)
        previous = other.before
    before = without(before, ".git")
    sides = tuple(
        ChangeSide(c.before.ref, c.before.subdir, c.after.ref, c.after.subdir)
        for c in (ours, *others)
    )
    op = MergeChanges(before.ref, before.subdir, sides, on_conflict)  # type: ignore[arg-type]
    return Changeset(before=before, after=Directory(Ref(op), before.subdir))


def _load_changeset(ctx: RequestContext, changeset_id: str) -> Changeset:
    value = ctx.load(changeset_id, "Changeset").value
    assert isinstance(value, Changeset)
    return value


@builds("Changeset", "withChangeset")
async def changeset_with_changeset(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Changeset:
    other = _load_changeset(ctx, args["changes"])
    return merged(_changes(parent), [other], args["onConflict"])


@builds("Changeset", "withChangesets")
async def changeset_with_changesets(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Changeset:
    others = [_load_changeset(ctx, i) for i in args["changes"]]
    return merged(_changes(parent), others, args["onConflict"])


def _attribute_leaf(field: str, attribute: str) -> None:
    async def resolve(ctx: RequestContext, parent: Handle | None, args: Args) -> object:
        assert parent is not None
        return getattr(parent.value, attribute)

    leaf("DiffStat", field, memo=False)(resolve)


for _field, _attribute in (
    ("path", "path"),
    ("kind", "kind"),
    ("addedLines", "added_lines"),
    ("removedLines", "removed_lines"),
    ("oldPath", "old_path"),
):
    _attribute_leaf(_field, _attribute)
