"""Where the state root is: a module of its own, so the SDK finds it without importing the
engine's layout (and attrs with it)."""

from __future__ import annotations

import os
from pathlib import Path

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
