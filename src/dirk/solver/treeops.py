"""The tree operations beyond plain file writes: symlinks, timestamps, owners, patches and
comparisons of two trees. Each takes its input snapshots and gives one new snapshot; they run
in a worker thread (they block on the filesystem and on git)."""

from __future__ import annotations

import json
from pathlib import Path

from dirk.errors import PatchError
from dirk.solver import envfiles
from dirk.solver.ops import (
    ApplyChanges,
    ApplyPatch,
    Chown,
    DiffTrees,
    MergeChanges,
    Ref,
    RenderEnvFile,
    SetTimestamps,
    Symlink,
)
from dirk.solver.owners import resolve_owner
from dirk.workers.snapshots import changes, fileops, merge, metaops, patches
from dirk.workers.snapshots.layers import Snapshot
from dirk.workers.snapshots.snapshotter import Snapshotter

TreeOp = (
    Symlink
    | SetTimestamps
    | Chown
    | ApplyPatch
    | DiffTrees
    | ApplyChanges
    | MergeChanges
    | RenderEnvFile
)
TREE_OPS = (
    Symlink,
    SetTimestamps,
    Chown,
    ApplyPatch,
    DiffTrees,
    ApplyChanges,
    MergeChanges,
    RenderEnvFile,
)
#: Where a "paths"/"stats" comparison and a "patch" comparison put their result.
CHANGES_FILE = "/changes.json"
PATCH_FILE = "/diff.patch"
#: Where `RenderEnvFile` writes.
ENV_FILE = "/.env"


def run_tree_op(
    snap: Snapshotter, op: TreeOp, inputs: dict[Ref, Snapshot], scratch: Path
) -> Snapshot:
    """The snapshot `op` makes of its `inputs`; `scratch` holds temporary work dirs."""
    if isinstance(op, DiffTrees):
        return _compare(snap, op, inputs, scratch)
    if isinstance(op, RenderEnvFile):
        return _env_file(snap, op, inputs)
    active = snap.mount_rw(inputs[op.base])
    try:
        root = active.merged
        if isinstance(op, Symlink):
            metaops.make_symlink(root, op.target, op.link_name)
        elif isinstance(op, SetTimestamps):
            metaops.set_timestamps(root, op.path, op.timestamp)
        elif isinstance(op, Chown):
            uid, gid = resolve_owner(root, op.owner)
            metaops.chown_tree(root, op.path, uid, gid)
        elif isinstance(op, MergeChanges):
            fileops.make_dir(root, op.path)
            _merge(snap, op, inputs, fileops.resolve_in_root(root, op.path), scratch)
        elif isinstance(op, ApplyPatch):
            patch = _read(snap, inputs[op.patch], op.patch_path)
            fileops.make_dir(root, op.path)
            patches.apply_patch(fileops.resolve_in_root(root, op.path), patch)
        else:
            fileops.make_dir(root, op.path)
            dest = fileops.resolve_in_root(root, op.path)
            with (
                snap.mount_ro(inputs[op.before]) as before_root,
                snap.mount_ro(inputs[op.after]) as after_root,
            ):
                _, after, found = _compare_views(
                    snap,
                    (inputs[op.before], before_root, op.before_path),
                    (inputs[op.after], after_root, op.after_path),
                )
                changes.apply_changes(after, found, dest)
    except BaseException:
        snap.release(active)
        raise
    return snap.commit(active)


def _merge(
    snap: Snapshotter, op: MergeChanges, inputs: dict[Ref, Snapshot], work: Path, scratch: Path
) -> None:
    """Each side's patch (against its own `before`), merged by git into `work`."""
    side_patches: list[bytes] = []
    side_changes: list[changes.TreeChanges] = []
    for side in op.sides:
        with (
            snap.mount_ro(inputs[side.before]) as before_root,
            snap.mount_ro(inputs[side.after]) as after_root,
        ):
            before = fileops.resolve_in_root(before_root, side.before_path)
            after = fileops.resolve_in_root(after_root, side.after_path)
            side_patches.append(patches.diff_patch(before, after, scratch))
            if op.on_conflict == "FAIL_EARLY":
                _, _, found = _compare_views(
                    snap,
                    (inputs[side.before], before_root, side.before_path),
                    (inputs[side.after], after_root, side.after_path),
                )
                side_changes.append(found)
    for i, ours in enumerate(side_changes):
        for theirs in side_changes[i + 1 :]:
            clashes = merge.conflicts(ours, theirs)
            if clashes:
                raise PatchError(
                    "the changesets conflict: " + "; ".join(clashes) + ". Pick onConflict "
                    "(FAIL, LEAVE_CONFLICT_MARKERS, PREFER_OURS, PREFER_THEIRS) to merge anyway"
                )
    merge.merge_patches(work, side_patches, op.on_conflict)


def _env_file(snap: Snapshotter, op: RenderEnvFile, inputs: dict[Ref, Snapshot]) -> Snapshot:
    text = None
    if op.source is not None:
        text = snap.read_file(inputs[op.source], op.source_path).decode("utf-8", "replace")
    data = envfiles.render(envfiles.resolve(text, op.edits, op.expand))
    active = snap.mount_rw(Snapshot())
    try:
        fileops.write_file(active.merged, ENV_FILE, data)
    except BaseException:
        snap.release(active)
        raise
    return snap.commit(active)


def _compare_views(
    snap: Snapshotter,
    before: tuple[Snapshot, Path, str],
    after: tuple[Snapshot, Path, str],
) -> tuple[Path, Path, changes.TreeChanges]:
    """(before dir, after dir, changes) of two mounted views given as (snapshot, mounted root,
    path). When `after` is `before` with layers on top (the usual case: a step's output
    compared with its input), only the paths those layers hold are compared."""
    before_snapshot, before_root, before_path = before
    after_snapshot, after_root, after_path = after
    before_parts = fileops.resolve_parts(before_root, before_path)
    after_parts = fileops.resolve_parts(after_root, after_path)
    before_dir = before_root.joinpath(*before_parts)
    after_dir = after_root.joinpath(*after_parts)
    touched = None
    if before_parts == after_parts:
        above = snap.layers_above(before_snapshot, after_snapshot)
        if above is not None:
            touched = changes.touched_by(above).below(after_parts)
    return before_dir, after_dir, changes.compare_trees(before_dir, after_dir, touched)


def _read(snap: Snapshotter, snapshot: Snapshot, path: str) -> bytes:
    return snap.read_file(snapshot, path)


def _compare(
    snap: Snapshotter, op: DiffTrees, inputs: dict[Ref, Snapshot], scratch: Path
) -> Snapshot:
    active = snap.mount_rw(Snapshot())
    try:
        with (
            snap.mount_ro(inputs[op.before]) as before_root,
            snap.mount_ro(inputs[op.after]) as after_root,
        ):
            if op.kind == "patch":
                before = fileops.resolve_in_root(before_root, op.before_path)
                after = fileops.resolve_in_root(after_root, op.after_path)
                data = patches.diff_patch(before, after, scratch)
                fileops.write_file(active.merged, PATCH_FILE, data)
            else:
                before, after, found = _compare_views(
                    snap,
                    (inputs[op.before], before_root, op.before_path),
                    (inputs[op.after], after_root, op.after_path),
                )
                if op.kind == "layer":
                    changes.copy_changed(after, found, active.merged)
                else:
                    summary = _summary(found, before, after, scratch, op.kind == "stats")
                    fileops.write_file(active.merged, CHANGES_FILE, summary)
    except BaseException:
        snap.release(active)
        raise
    return snap.commit(active)


def _summary(
    found: changes.TreeChanges, before: Path, after: Path, scratch: Path, stats: bool
) -> bytes:
    summary: dict[str, object] = {
        "added": list(found.added),
        "modified": list(found.modified),
        "removed": list(found.removed),
        "all_removed": list(found.all_removed),
    }
    if stats:
        counts = {}
        if not found.empty:
            counts = patches.line_counts(patches.diff_patch(before, after, scratch))
        summary["lines"] = {p: [c.added, c.removed] for p, c in counts.items()}
    return json.dumps(summary, sort_keys=True).encode()
