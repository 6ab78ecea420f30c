"""Symlink, SetTimestamps, Chown, ApplyPatch, DiffTrees, ApplyChanges, MergeChanges and
RenderEnvFile: tree operations beyond plain file writes (`solver/treeops.py` does the work).

The key covers every field and the keys of every input tree (base, patch, before, after, the
sides of a merge).
Running it mounts what it needs, makes one new snapshot in a worker thread (they block on the
filesystem and on git), with the engine's `tmp/` for scratch work.
"""

from __future__ import annotations

import anyio.to_thread

from dirk.solver.handlers.base import Handler, Step
from dirk.solver.results import OpResult
from dirk.solver.treeops import TreeOp, run_tree_op


class TreeOpHandler(Handler[TreeOp]):
    async def run(self, op: TreeOp, step: Step) -> OpResult:
        snapshot = await anyio.to_thread.run_sync(
            run_tree_op,
            self.workers.snapshotter,
            op,
            dict(step.inputs),
            self.workers.layers.layout.tmp,
        )
        return OpResult(step.key, (snapshot,))
