"""MkFile, MkDir, Remove, Copy and ExtractArchive: one change to a base filesystem, committed
as one layer.

The key covers every field (inline file contents by their sha256) and the keys of the base
(and, for Copy and ExtractArchive, the source). Running it mounts the base read-write, makes
the change in a worker thread, and commits the upper directory: the step costs what it writes.
"""

from __future__ import annotations

import anyio.to_thread

from dirk.solver.handlers.base import Handler, Step
from dirk.solver.ops import Copy, ExtractArchive, MkDir, MkFile, Ref, Remove
from dirk.solver.owners import resolve_owner
from dirk.solver.results import OpResult
from dirk.workers.snapshots import fileops
from dirk.workers.snapshots.archive import extract_archive
from dirk.workers.snapshots.layers import Snapshot
from dirk.workers.snapshots.snapshotter import Snapshotter

FileOp = MkFile | MkDir | Remove | Copy | ExtractArchive


def _apply(snap: Snapshotter, op: FileOp, base: Snapshot, source: Snapshot | None) -> Snapshot:
    active = snap.mount_rw(base)
    try:
        root = active.merged
        if isinstance(op, MkFile):
            fileops.write_file(root, op.path, op.contents, op.mode, op.uid, op.gid)
        elif isinstance(op, MkDir):
            fileops.make_dir(root, op.path, op.mode)
        elif isinstance(op, Remove):
            fileops.remove(root, op.path, op.allow_missing)
        elif isinstance(op, ExtractArchive):
            assert source is not None
            with snap.mount_ro(source) as source_root:
                archive = fileops.resolve_in_root(source_root, op.source_path)
                extract_archive(archive, root, op.dest_path)
        else:
            assert source is not None
            owner = resolve_owner(root, op.owner) if op.owner else None
            with snap.mount_ro(source) as source_root:
                fileops.copy_into(
                    source_root,
                    op.source_path,
                    root,
                    op.dest_path,
                    include=op.include,
                    exclude=op.exclude,
                    owner=owner,
                    mode=op.mode,
                    gitignore=op.gitignore,
                )
    except BaseException:
        snap.release(active)
        raise
    return snap.commit(active)


class FileOpHandler(Handler[FileOp]):
    """One handler for the file operations: they differ only in the change made."""

    async def run(self, op: FileOp, step: Step) -> OpResult:
        source: Ref | None = op.source if isinstance(op, Copy | ExtractArchive) else None
        snapshot = await anyio.to_thread.run_sync(
            _apply,
            self.workers.snapshotter,
            op,
            step.inputs[op.base],
            step.inputs[source] if source is not None else None,
        )
        return OpResult(step.key, (snapshot,))
