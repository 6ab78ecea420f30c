"""SQLite metadata: what layers exist, what each cache key resolved to.

One connection shared by the engine's threads behind a lock; WAL mode so a crash at any point
leaves either the old or the new row, never half of one.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs

from dirk.errors import StateError

SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS layers (
    id TEXT PRIMARY KEY,          -- directory name under l/
    source TEXT UNIQUE,           -- what it was made from, e.g. an image layer's digest
    size INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS cache (
    key TEXT PRIMARY KEY,         -- an operation's cache key
    result TEXT NOT NULL,         -- JSON: the snapshots and metadata it produced
    created REAL NOT NULL,
    last_used REAL NOT NULL,
    kind TEXT NOT NULL DEFAULT '',        -- the operation's type (e.g. "Exec")
    description TEXT NOT NULL DEFAULT ''  -- the step as progress names it (`Op.describe`)
);
CREATE TABLE IF NOT EXISTS layer_blobs (
    layer_id TEXT NOT NULL,       -- a layer directory under l/
    compression TEXT NOT NULL,    -- "gzip", "zstd" or "none"
    digest TEXT NOT NULL,         -- the blob (in blobs/) holding the layer as a tar
    diff_id TEXT NOT NULL,        -- the digest of the uncompressed tar
    size INTEGER NOT NULL,
    PRIMARY KEY (layer_id, compression)
);
CREATE TABLE IF NOT EXISTS blob_sources (
    digest TEXT NOT NULL,         -- a blob known to be in a repository of a registry
    registry TEXT NOT NULL,
    repository TEXT NOT NULL,
    PRIMARY KEY (digest, registry, repository)
);
"""


class Database:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        try:
            # Made 0600 before SQLite opens it (SQLite gives its -wal and -shm files the
            # database file's mode): the cache index is the engine's alone.
            os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
            self._conn = sqlite3.connect(
                str(path), check_same_thread=False, isolation_level=None, timeout=30
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_SCHEMA)
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StateError(
                f"the engine's database {path} is unusable ({exc}); move it aside to start "
                "with an empty cache"
            ) from exc
        except OSError as exc:
            raise StateError(
                f"cannot open the engine's database {path} ({exc.strerror}): check that the "
                "state directory exists and is writable by the engine"
            ) from exc

    def _migrate(self) -> None:
        """Bring a database of an older engine up to this schema (columns added since)."""
        columns = {str(row[1]) for row in self._conn.execute("PRAGMA table_info(cache)")}
        for name in ("kind", "description"):
            if name not in columns:
                self._conn.execute(f"ALTER TABLE cache ADD COLUMN {name} TEXT NOT NULL DEFAULT ''")
        self._conn.execute("CREATE INDEX IF NOT EXISTS cache_last_used ON cache(last_used)")
        self._conn.execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)",
            (str(SCHEMA_VERSION),),
        )

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    # --- layers ---------------------------------------------------------------------------

    def add_layer(self, layer_id: str, source: str | None, size: int) -> None:
        self.execute(
            "INSERT OR REPLACE INTO layers(id, source, size, created) VALUES (?, ?, ?, ?)",
            (layer_id, source, size, time.time()),
        )

    def layer_by_source(self, source: str) -> str | None:
        rows = self.execute("SELECT id FROM layers WHERE source = ?", (source,))
        return str(rows[0][0]) if rows else None

    def layer_ids(self) -> set[str]:
        return {str(r[0]) for r in self.execute("SELECT id FROM layers")}

    def remove_layer(self, layer_id: str) -> None:
        self.execute("DELETE FROM layers WHERE id = ?", (layer_id,))

    # --- layer blobs (image layers as tar blobs, per compression) --------------------------

    def add_layer_blob(
        self, layer_id: str, compression: str, digest: str, diff_id: str, size: int
    ) -> None:
        self.execute(
            "INSERT OR REPLACE INTO layer_blobs(layer_id, compression, digest, diff_id, size) "
            "VALUES (?, ?, ?, ?, ?)",
            (layer_id, compression, digest, diff_id, size),
        )

    def layer_blobs(self, layer_id: str) -> list[tuple[str, str, str, int]]:
        """(compression, digest, diff_id, size) of every blob made of layer `layer_id`."""
        rows = self.execute(
            "SELECT compression, digest, diff_id, size FROM layer_blobs WHERE layer_id = ? "
            "ORDER BY compression",
            (layer_id,),
        )
        return [(str(c), str(d), str(i), int(s)) for c, d, i, s in rows]

    def remove_layer_blob(self, layer_id: str, compression: str) -> None:
        self.execute(
            "DELETE FROM layer_blobs WHERE layer_id = ? AND compression = ?",
            (layer_id, compression),
        )

    def add_blob_source(self, digest: str, registry: str, repository: str) -> None:
        self.execute(
            "INSERT OR IGNORE INTO blob_sources(digest, registry, repository) VALUES (?, ?, ?)",
            (digest, registry, repository),
        )

    def blob_sources(self, digest: str, registry: str) -> list[str]:
        """Repositories of `registry` known to hold blob `digest`."""
        rows = self.execute(
            "SELECT repository FROM blob_sources WHERE digest = ? AND registry = ?",
            (digest, registry),
        )
        return [str(r[0]) for r in rows]

    # --- cache ----------------------------------------------------------------------------

    def cache_get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            rows = self._conn.execute("SELECT result FROM cache WHERE key = ?", (key,)).fetchall()
            if not rows:
                return None
            self._conn.execute("UPDATE cache SET last_used = ? WHERE key = ?", (time.time(), key))
        result: dict[str, Any] = json.loads(rows[0][0])
        return result

    def cache_put(
        self, key: str, result: dict[str, Any], kind: str = "", description: str = ""
    ) -> None:
        now = time.time()
        self.execute(
            "INSERT OR REPLACE INTO cache(key, result, created, last_used, kind, description) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (key, json.dumps(result, sort_keys=True), now, now, kind, description),
        )

    def cache_touch(self, keys: Sequence[str], when: float) -> None:
        """Mark rows as used at `when` (results a session took from the solver's memory)."""
        with self._transaction() as conn:
            conn.executemany(
                "UPDATE cache SET last_used = ? WHERE key = ? AND last_used < ?",
                [(when, key, when) for key in keys],
            )

    def cache_delete(self, key: str) -> None:
        self.execute("DELETE FROM cache WHERE key = ?", (key,))

    def cache_rows(self) -> list[CacheRow]:
        """Every cache row with its bookkeeping, for the garbage collector (`solver.gc`)."""
        rows = self.execute("SELECT key, result, created, last_used, kind, description FROM cache")
        return [
            CacheRow(str(k), str(r), float(c), float(u), str(kind), str(d))
            for k, r, c, u, kind, d in rows
        ]

    def layer_rows(self) -> list[LayerRow]:
        """Every layer: id, source, measured size (<= 0: not measured yet), creation time."""
        rows = self.execute("SELECT id, source, size, created FROM layers")
        return [LayerRow(str(i), s, int(z), float(c)) for i, s, z, c in rows]

    def all_layer_blobs(self) -> list[tuple[str, str, int]]:
        """(layer id, blob digest, size) of every blob made of a layer."""
        rows = self.execute("SELECT layer_id, digest, size FROM layer_blobs")
        return [(str(i), str(d), int(z)) for i, d, z in rows]

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def set_layer_sizes(self, sizes: dict[str, int]) -> None:
        with self._transaction() as conn:
            conn.executemany(
                "UPDATE layers SET size = ? WHERE id = ?",
                [(size, layer_id) for layer_id, size in sizes.items()],
            )

    def forget(self, keys: Sequence[str], layer_ids: Sequence[str], blobs: Sequence[str]) -> None:
        """Drop cache rows, layers (with their blob rows) and blob locations in one
        transaction: the garbage collector's commit, made before the files go."""
        with self._transaction() as conn:
            conn.executemany("DELETE FROM cache WHERE key = ?", [(k,) for k in keys])
            ids = [(i,) for i in layer_ids]
            conn.executemany("DELETE FROM layers WHERE id = ?", ids)
            conn.executemany("DELETE FROM layer_blobs WHERE layer_id = ?", ids)
            conn.executemany("DELETE FROM blob_sources WHERE digest = ?", [(d,) for d in blobs])


@attrs.frozen
class CacheRow:
    key: str
    result: str  # JSON text
    created: float
    last_used: float
    kind: str
    description: str


@attrs.frozen
class LayerRow:
    id: str
    source: str | None
    size: int
    created: float
