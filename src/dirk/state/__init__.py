"""The engine's persistent state: SQLite metadata and content-addressed blobs, under one root.

The names load on first use: the SDK needs only `dirk.state.location`, not SQLite or attrs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dirk.state.blobs import BlobStore as BlobStore
    from dirk.state.db import Database as Database
    from dirk.state.layout import StateLayout as StateLayout

_EXPORTS = {
    "BlobStore": "dirk.state.blobs",
    "Database": "dirk.state.db",
    "StateLayout": "dirk.state.layout",
}

__all__ = ["BlobStore", "Database", "StateLayout"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dirk.state' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
