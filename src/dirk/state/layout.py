"""Where everything of the engine lives on disk, below one state root."""

from __future__ import annotations

import os
from pathlib import Path

import attrs

STATE_DIR_ENV = "DIRK_STATE_DIR"


def default_state_dir() -> Path:
    """`/var/lib/dirk` for root, `$XDG_DATA_HOME/dirk` otherwise; `DIRK_STATE_DIR` overrides."""
    override = os.environ.get(STATE_DIR_ENV)
    if override:
        return Path(override)
    if os.geteuid() == 0:
        return Path("/var/lib/dirk")
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "dirk"


@attrs.frozen
class StateLayout:
    """The folders of one engine's state. Paths stay short: overlayfs mount options are limited
    to one page, and every lower layer's path goes into them."""

    root: Path

    @property
    def db_path(self) -> Path:
        return self.root / "dirk.db"

    @property
    def blobs(self) -> Path:
        """Content-addressed blobs: `blobs/sha256/<hex>`."""
        return self.root / "blobs"

    @property
    def layers(self) -> Path:
        """Committed, immutable filesystem layers in overlayfs format: `l/<id>`."""
        return self.root / "l"

    @property
    def volumes(self) -> Path:
        """Cache volume contents: `v/<name>/<instance>`."""
        return self.root / "v"

    @property
    def tmp(self) -> Path:
        """Work in progress; anything here after a restart is garbage."""
        return self.root / "tmp"

    @property
    def run(self) -> Path:
        """Mount points, bundles and runtime state of running containers; emptied at start."""
        return self.root / "run"

    def ensure(self) -> StateLayout:
        for path in (self.root, self.blobs, self.layers, self.volumes, self.tmp, self.run):
            path.mkdir(parents=True, exist_ok=True)
        return self
