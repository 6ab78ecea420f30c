"""The persistent cache of results: a key -> the layer ids and exec outputs it produced.

SQLite reads and writes (indexed, no fsync in WAL mode) stay on the event loop: a thread round
trip per step costs more than they do. Blob files go through a thread. A row is written only
once every layer it names is committed, and a row naming something gone is dropped.
"""

from __future__ import annotations

import base64
from typing import Any

import anyio.to_thread

from dirk.errors import StateError
from dirk.solver.results import ExecOutcome, OpResult
from dirk.state.blobs import BlobStore
from dirk.state.db import Database
from dirk.workers.snapshots.layers import LayerStore, Snapshot

#: Exec outputs up to this size are stored in the cache row itself, larger ones as blobs.
INLINE_OUTPUT_LIMIT = 64 * 1024


class ResultStore:
    def __init__(self, db: Database, blobs: BlobStore, layers: LayerStore) -> None:
        self._db = db
        self._blobs = blobs
        self._layers = layers

    async def load(self, key: str) -> OpResult | None:
        """The stored result of `key`, if every layer and blob it names is still there; a row
        naming something gone (or of another format) is dropped, so the work runs again."""
        try:
            stored = self._db.cache_get(key)
        except ValueError:  # not JSON
            self._db.cache_delete(key)
            return None
        if stored is None:
            return None
        if _names_blobs(stored):
            loaded = await anyio.to_thread.run_sync(self._decode_or_drop, key, stored)
            # Checked again on the event loop, where the collector deletes (`solver.leases`).
            return loaded if loaded is not None and self.present(loaded) else None
        return self._decode_or_drop(key, stored)

    async def store(
        self, key: str, result: OpResult, kind: str = "", description: str = ""
    ) -> None:
        """Written last, once every layer the result names is committed. `kind` (the
        operation's type) and `description` name the entry in `dirk cache ls`."""
        if has_blob_output(result):
            encoded = await anyio.to_thread.run_sync(self._encode, result)
        else:
            encoded = self._encode(result)
        self._db.cache_put(key, encoded, kind, description)

    def present(self, result: OpResult) -> bool:
        """Whether every layer `result` names is still on disk."""
        return all(self._layers.exists(layer) for s in result.outputs for layer in s.layers)

    def _decode_or_drop(self, key: str, stored: dict[str, Any]) -> OpResult | None:
        try:
            loaded = self._decode(key, stored)
        except (KeyError, TypeError, ValueError):
            loaded = None
        if loaded is None:
            self._db.cache_delete(key)
        return loaded

    def _encode(self, result: OpResult) -> dict[str, Any]:
        encoded: dict[str, Any] = {"outputs": [list(s.layers) for s in result.outputs]}
        if result.duration:
            encoded["duration"] = round(result.duration, 3)
        if result.exec is not None:
            encoded["exit_code"] = result.exec.exit_code
            encoded["stdout"] = self._store_output(result.exec.stdout)
            encoded["stderr"] = self._store_output(result.exec.stderr)
            encoded["order"] = [list(run) for run in result.exec.order]
        return encoded

    def _store_output(self, data: bytes) -> dict[str, str]:
        # Small outputs (the usual case) live in the cache row: no file to create per step.
        if len(data) <= INLINE_OUTPUT_LIMIT:
            return {"inline": base64.b64encode(data).decode()}
        return {"blob": self._blobs.put_bytes(data)}

    def _load_output(self, stored: dict[str, str]) -> bytes | None:
        if "inline" in stored:
            return base64.b64decode(stored["inline"])
        try:
            return self._blobs.get_bytes(stored["blob"])
        except StateError:  # gone, or not a digest
            return None

    def _decode(self, key: str, stored: dict[str, Any]) -> OpResult | None:
        outputs = tuple(Snapshot(tuple(layers)) for layers in stored["outputs"])
        for snapshot in outputs:
            if not all(self._layers.exists(layer) for layer in snapshot.layers):
                return None
        outcome = None
        if "exit_code" in stored:
            stdout = self._load_output(stored["stdout"])
            stderr = self._load_output(stored["stderr"])
            if stdout is None or stderr is None:
                return None
            order = tuple((int(stream), int(count)) for stream, count in stored["order"])
            outcome = ExecOutcome(stored["exit_code"], stdout, stderr, order)
        duration = float(stored.get("duration", 0.0))
        return OpResult(key, outputs, outcome, cached=True, duration=duration)


def has_blob_output(result: OpResult) -> bool:
    """Whether an exec output is too large for the cache row (and for the memo)."""
    outcome = result.exec
    if outcome is None:
        return False
    return max(len(outcome.stdout), len(outcome.stderr)) > INLINE_OUTPUT_LIMIT


def _names_blobs(stored: dict[str, Any]) -> bool:
    """Whether a cache row keeps an exec output in a blob file (reading it is file I/O)."""
    return any(
        isinstance(stored.get(s), dict) and "blob" in stored[s] for s in ("stdout", "stderr")
    )
