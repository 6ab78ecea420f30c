"""Committed filesystem layers: immutable directories in overlayfs format under `l/<id>`.

A layer is filled in `tmp/`, then renamed into place and registered in the database, in that
order, so a crash never leaves a database row without its directory.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs

from dirk.state.db import Database
from dirk.state.layout import StateLayout


@attrs.frozen
class Snapshot:
    """An immutable filesystem tree: layer ids, bottom first. No layers = an empty tree."""

    layers: tuple[str, ...] = ()

    def on_top(self, layer_id: str) -> Snapshot:
        return Snapshot((*self.layers, layer_id))


def new_layer_id() -> str:
    """Short random ids keep overlayfs mount options (one page at most) small."""
    return secrets.token_hex(6)


@attrs.define
class LayerBuilder:
    """A directory being filled; becomes layer `layer_id` when the `create` block ends cleanly."""

    path: Path
    layer_id: str


class LayerStore:
    def __init__(self, layout: StateLayout, db: Database) -> None:
        self.layout = layout
        self.db = db
        #: Layers found by source (`by_source`) since the solver was last idle: a step may
        #: be about to name them in its result, so the garbage collector keeps them.
        self.handed_out: set[str] = set()
        #: Layers the garbage collector is removing: no lookup finds them any more.
        self.dying: set[str] = set()

    def path(self, layer_id: str) -> Path:
        return self.layout.layers / layer_id

    def exists(self, layer_id: str) -> bool:
        """Whether layer `layer_id` is there to use (not gone, not being collected)."""
        return layer_id not in self.dying and self.path(layer_id).is_dir()

    def by_source(self, source: str) -> str | None:
        """The layer made from `source` (e.g. an image layer digest), if it exists."""
        layer_id = self.db.layer_by_source(source)
        if layer_id in self.dying:
            return None
        if layer_id is not None and not self.path(layer_id).is_dir():
            self.db.remove_layer(layer_id)
            return None
        if layer_id is not None:
            self.handed_out.add(layer_id)
        return layer_id

    @contextmanager
    def create(self, source: str | None = None) -> Iterator[LayerBuilder]:
        """Yield an empty directory to fill; on a clean exit it is committed as a new layer."""
        layer_id = new_layer_id()
        tmp = self.layout.tmp / f"layer-{layer_id}"
        tmp.mkdir(parents=True)
        builder = LayerBuilder(path=tmp, layer_id=layer_id)
        try:
            yield builder
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.adopt(tmp, layer_id, source)

    def adopt(self, directory: Path, layer_id: str, source: str | None = None) -> None:
        """Move a filled directory (e.g. an overlay upper dir) into place as layer `layer_id`."""
        os.replace(directory, self.path(layer_id))
        self.db.add_layer(layer_id, source, 0)

    def measure(self, layer_ids: Iterable[str]) -> dict[str, int]:
        """The disk space each layer takes, in bytes (blocks allocated, each inode counted
        once; 0 for one that is gone). Blocking. Measured by `du` processes: walking
        thousands of layers in a Python thread would fight a busy event loop for the GIL."""
        ids = list(layer_ids)
        sizes = tree_sizes([self.path(i) for i in ids])
        return {i: sizes[self.path(i)] for i in ids}

    def remove(self, layer_ids: Iterable[str]) -> None:
        """Delete layer directories that no database row names any more (the garbage
        collector's last step). Blocking; by `rm` processes, as `measure` measures."""
        remove_trees([str(self.path(i)) for i in layer_ids])

    def collect_garbage(self) -> int:
        """Remove layer directories that no database row names (left by a crash). Returns count."""
        known = self.db.layer_ids()
        removed = 0
        for entry in self.layout.layers.iterdir():
            if entry.name not in known:
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
        return removed


#: Paths per `du` or `rm` process: far below the kernel's limit on arguments.
_BATCH = 500


def _batches(paths: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(paths), _BATCH):
        yield paths[start : start + _BATCH]


def tree_sizes(roots: list[Path]) -> dict[Path, int]:
    """Bytes allocated below each of `roots` (blocks, each inode once, not crossing into
    another filesystem; 0 for one that is gone). Blocking; by `du` processes, which walk
    thousands of trees without taking the GIL from a busy event loop."""
    sizes = dict.fromkeys(roots, 0)
    for batch in _batches([str(root) for root in roots]):
        done = subprocess.run(
            ["du", "-s", "-B1", "-x", "--", *batch], capture_output=True, text=True
        )
        for line in done.stdout.splitlines():
            size, _, path = line.partition("\t")
            if size.isdigit():
                sizes[Path(path)] = int(size)
    return sizes


def remove_trees(paths: list[str]) -> None:
    """`rm -rf` each path, never crossing into another filesystem (a mount below stays)."""
    for batch in _batches(paths):
        subprocess.run(["rm", "-rf", "--one-file-system", "--", *batch], check=False)
