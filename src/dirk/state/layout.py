"""Where everything of the engine lives on disk, below one state root."""

from __future__ import annotations

import os
from pathlib import Path

import attrs

from dirk.state.location import STATE_DIR_ENV as STATE_DIR_ENV
from dirk.state.location import default_state_dir as default_state_dir


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
    def git(self) -> Path:
        """Bare cache repositories of git remotes, one per remote, kept across runs."""
        return self.root / "git"

    @property
    def tmp(self) -> Path:
        """Work in progress; anything here after a restart is garbage."""
        return self.root / "tmp"

    @property
    def run(self) -> Path:
        """Mount points, bundles and runtime state of running containers; emptied at start."""
        return self.root / "run"

    def ensure(self) -> StateLayout:
        """Create the folders, and make the state private again: the engine's folders 0700 and
        its own files 0600 (layers and volumes keep the modes their contents were given, out of
        reach behind them). Repairs a state dir made by an older engine or by hand."""
        for path in (
            self.root,
            self.blobs,
            self.layers,
            self.volumes,
            self.git,
            self.tmp,
            self.run,
        ):
            path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
            _set_mode(path, PRIVATE_DIR)
        with os.scandir(self.root) as entries:
            for entry in entries:
                if entry.is_file(follow_symlinks=False):
                    _set_mode(Path(entry.path), PRIVATE_FILE)
        return self


#: Modes of everything the engine keeps: only its owner (root) may read the state.
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def _set_mode(path: Path, mode: int) -> None:
    if os.lstat(path).st_mode & 0o7777 != mode:
        os.chmod(path, mode, follow_symlinks=False)
