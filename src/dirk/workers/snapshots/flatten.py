"""Merge a stack of layers into one directory, as overlayfs would show it, without copying data.

Layers are immutable, so the merged tree can hardlink their files; only directories are made
anew. The result is a bottom layer: nothing lies below it, so it holds no whiteouts.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from dirk.workers.snapshots.fileops import Copier
from dirk.workers.snapshots.layerview import Entry, LayerView


def flatten_into(view: LayerView, dst: Path) -> None:
    """Fill the existing empty directory `dst` with the merged tree of `view`."""
    root = view.root()
    if root is None:
        return
    copier = Copier(hardlinks=False)
    copier.set_meta(root.path, root.st, dst)
    _fill(view, root, dst, copier)
    copier.finish()


def _fill(view: LayerView, entry: Entry, dst: str | Path, copier: Copier) -> None:
    for name, child in view.children(entry):
        target = os.path.join(dst, name)
        if child.is_dir:
            copier.copy(child.path, child.st, target)
            _fill(view, child, target, copier)
            continue
        try:
            os.link(child.path, target, follow_symlinks=False)
        except OSError as exc:
            if exc.errno not in (errno.EMLINK, errno.EXDEV, errno.EPERM):
                raise
            copier.copy(child.path, child.st, target)
