"""The engine's persistent state: SQLite metadata and content-addressed blobs, under one root."""

from dirk.state.blobs import BlobStore
from dirk.state.db import Database
from dirk.state.layout import StateLayout

__all__ = ["BlobStore", "Database", "StateLayout"]
