"""Committed filesystem layers: immutable directories in overlayfs format under `l/<id>`.

A layer is filled in `tmp/`, then renamed into place and registered in the database, in that
order, so a crash never leaves a database row without its directory.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
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

    def path(self, layer_id: str) -> Path:
        return self.layout.layers / layer_id

    def by_source(self, source: str) -> str | None:
        """The layer made from `source` (e.g. an image layer digest), if it exists."""
        layer_id = self.db.layer_by_source(source)
        if layer_id is not None and not self.path(layer_id).is_dir():
            self.db.remove_layer(layer_id)
            return None
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

    def collect_garbage(self) -> int:
        """Remove layer directories that no database row names (left by a crash). Returns count."""
        known = self.db.layer_ids()
        removed = 0
        for entry in self.layout.layers.iterdir():
            if entry.name not in known:
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
        return removed
