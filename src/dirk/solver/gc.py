"""The cache's garbage collector: it runs in the background under a policy, never removes what
a live session uses, and says in the engine's log what it evicted and why.

A collection reads an index of the cache in a worker thread (`gc_plan.CacheIndex`: rows,
layers with their measured sizes, loose blobs, cache volumes), decides what goes
(`gc_plan.plan`) against what live sessions hold (`solver.leases`), and commits in two steps:

1. on the event loop, in one go: what sessions hold now is checked again, the chosen layers
   are marked dying (lookups by source and cache loads no longer find them), the solver's
   in-memory results naming them are forgotten, and loose blobs and unused volumes are moved
   aside;
2. in a thread: the database rows go in one transaction, then the layer directories are
   renamed into `tmp/` and deleted.

A crash anywhere leaves directories that no row names (removed at the next start) or rows
whose layer is gone (dropped when loaded): a smaller cache, never a wrong one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
import attrs

from dirk.solver.gc_plan import (
    BlobInfo,
    CacheEntry,
    CacheIndex,
    Disk,
    Held,
    LayerInfo,
    Plan,
    Request,
    RowInfo,
    VolumeInfo,
    plan,
    row_info,
)
from dirk.solver.gc_policy import CachePolicy, human_duration, human_size
from dirk.solver.volumes import volume_dir_name, volume_name
from dirk.workers.snapshots.layers import remove_trees, tree_sizes

if TYPE_CHECKING:
    from dirk.solver.solver import Solver
    from dirk.state.blobs import BlobStore
    from dirk.state.db import Database
    from dirk.state.layout import StateLayout
    from dirk.workers.snapshots.layers import LayerStore

log = logging.getLogger("dirk.gc")

#: Evictions named one by one in the log per collection (the rest are counted).
LOGGED_EVICTIONS = 50
#: Seconds after the engine starts before its first background collection.
FIRST_COLLECTION_DELAY = 30.0


@attrs.frozen
class PruneReport:
    """What one collection did."""

    evicted: int
    freed: int
    cause: str


class GarbageCollector:
    def __init__(
        self,
        *,
        solver: Solver,
        db: Database,
        layers: LayerStore,
        blobs: BlobStore,
        layout: StateLayout,
        policy: CachePolicy,
        interval: float,
    ) -> None:
        self._solver = solver
        self._db = db
        self._layers = layers
        self._blobs = blobs
        self._layout = layout
        self.policy = policy
        self.interval = interval
        self._lock = anyio.Lock()

    # --- reading --------------------------------------------------------------------------

    def disk(self) -> Disk:
        usage = shutil.disk_usage(self._layout.root)
        return Disk(usage.total, usage.free)

    async def entries(self) -> list[CacheEntry]:
        """Every entry of the cache, with whether a live session uses it."""
        held = self._held(time.monotonic())
        return await anyio.to_thread.run_sync(lambda: self._index().entries(held))

    def _held(self, since: float) -> Held:
        leases = self._solver.leases.held_since(since)
        volumes = {volume_dir_name(name) for name in leases.volumes}
        volumes |= self._solver.workers.volumes.in_use()
        return Held(leases.keys, leases.layers | self._layers.handed_out, frozenset(volumes))

    def _index(self) -> CacheIndex:
        """Blocking: read the database and measure what is not measured yet."""
        layers = self._db.layer_rows()
        unmeasured = self._layers.measure(row.id for row in layers if row.size <= 0)
        if unmeasured:
            self._db.set_layer_sizes(unmeasured)
        layer_blobs: dict[str, list[str]] = {}
        for layer_id, digest, _ in self._db.all_layer_blobs():
            layer_blobs.setdefault(layer_id, []).append(digest)
        stored = dict(_blob_files(self._blobs.root))
        blob_sizes = {digest: size for digest, (size, _) in stored.items()}
        index = CacheIndex()
        for row in layers:
            own = layer_blobs.get(row.id, [])
            size = unmeasured.get(row.id, row.size) + sum(blob_sizes.get(d, 0) for d in own)
            index.layers[row.id] = LayerInfo(row.id, size, row.created, tuple(own))
        for cached in self._db.cache_rows():
            index.rows[cached.key] = row_info(
                cached.key,
                cached.result,
                cached.created,
                cached.last_used,
                cached.kind,
                cached.description,
                blob_sizes,
            )
        named = {d for ds in layer_blobs.values() for d in ds}
        named |= {d for row in index.rows.values() for d in row.blobs}
        named |= {row.source for row in layers if row.source}
        for digest, (size, modified) in stored.items():
            if digest not in named:
                index.loose_blobs[digest] = BlobInfo(digest, size, modified)
        folders = _volume_folders(self._layout.volumes)
        volume_sizes = tree_sizes(folders)
        for folder in folders:
            st = folder.stat()
            index.volumes[folder.name] = VolumeInfo(
                folder.name, volume_name(folder), volume_sizes[folder], st.st_ctime, st.st_mtime
            )
        return index

    async def touch(self, keys: Iterable[str]) -> None:
        """Record that a session used these results (a session's memo hits never reach the
        database otherwise, and least recently used must mean used, not loaded)."""
        used = list(keys)
        if used:
            await anyio.to_thread.run_sync(self._db.cache_touch, used, time.time())

    # --- collecting -----------------------------------------------------------------------

    async def prune(self, request: Request) -> PruneReport:
        """Run one collection for `request` (one at a time); returns what it freed."""
        async with self._lock:
            since = time.monotonic()
            if self._solver.idle:
                self._layers.handed_out.clear()
            held = self._held(since)
            idle = self._solver.idle

            def decide() -> Plan:  # a worker thread: reading and planning take a while
                return plan(self._index(), held, request, self.disk(), time.time(), idle=idle)

            chosen = await anyio.to_thread.run_sync(decide)
            if chosen.empty:
                return PruneReport(0, 0, chosen.cause)
            committed = await self._commit(chosen, since)
            _log(committed)
            return PruneReport(len(committed.evictions), committed.freed, committed.cause)

    async def _commit(self, chosen: Plan, since: float) -> Plan:
        # Step 1, without awaiting: nothing a session takes from now on can be removed.
        held = self._held(since)
        idle = self._solver.idle
        kept_rows = [row for key in chosen.rows & held.keys if (row := self._row(key))]
        rows = chosen.rows - held.keys
        kept_layers = held.layers | {layer for row in kept_rows for layer in row.layers}
        layers = chosen.layers - kept_layers
        volumes = chosen.volumes - held.volumes
        # What stays keeps its files: the output blobs of kept rows, the blobs of kept layers.
        kept_blobs = {digest for row in kept_rows for digest in row.blobs}
        for layer in chosen.layers & kept_layers:
            kept_blobs.update(blob[1] for blob in self._db.layer_blobs(layer))
        blobs = chosen.blobs - kept_blobs if idle else frozenset()
        self._layers.dying |= layers
        self._solver.forget(list(rows), list(layers))
        trash = self._layout.tmp / f"gc-{os.getpid()}-{time.monotonic_ns()}"
        trash.mkdir()
        for folder in volumes:
            _move(self._layout.volumes / folder, trash / f"v-{folder}")
        for digest in blobs:
            _move(self._blobs.path(digest), trash / f"b-{digest[7:]}")
        # Step 2: the database, then the files.
        try:
            await anyio.to_thread.run_sync(
                self._forget_and_remove, list(rows), list(layers), list(blobs)
            )
        finally:
            self._layers.dying -= layers
        self._solver.sweep_memo()
        await anyio.to_thread.run_sync(remove_trees, [str(trash)])
        done = attrs.evolve(chosen, rows=rows, layers=layers, volumes=volumes, blobs=blobs)
        removed = done.removed
        evictions = tuple(e for e in chosen.evictions if not e.kept_by(removed))
        freed = chosen.freed - sum(e.entry.size for e in chosen.evictions if e.kept_by(removed))
        return attrs.evolve(done, evictions=evictions, freed=max(0, freed))

    def _row(self, key: str) -> RowInfo | None:
        rows = self._db.execute("SELECT result FROM cache WHERE key = ?", (key,))
        if not rows:
            return None
        return row_info(key, str(rows[0][0]), 0.0, 0.0, "", "", {})

    def _forget_and_remove(self, rows: list[str], layers: list[str], blobs: list[str]) -> None:
        self._db.forget(rows, layers, blobs)
        self._layers.remove(layers)

    # --- background -----------------------------------------------------------------------

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Collect under the policy every `interval` seconds while the block runs."""
        if self.interval <= 0:
            yield
            return
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._background)
            try:
                yield
            finally:
                tg.cancel_scope.cancel()

    async def _background(self) -> None:
        await anyio.sleep(min(FIRST_COLLECTION_DELAY, self.interval))
        while True:
            try:
                await self.prune(Request(policy=self.policy))
            except Exception:
                log.exception("cache gc: a background collection failed; the next one retries")
            await anyio.sleep(self.interval)


def _log(done: Plan) -> None:
    if not done.evictions:
        return
    log.info(
        "cache gc: evicted %d entries, %s freed (%s)",
        len(done.evictions),
        human_size(done.freed),
        done.cause or "asked",
    )
    now = time.time()
    for eviction in done.evictions[:LOGGED_EVICTIONS]:
        entry = eviction.entry
        log.info(
            "cache gc:   %s %s (%s, last used %s ago): %s",
            entry.record_type,
            entry.description or entry.key[:19],
            human_size(entry.size),
            human_duration(max(0.0, now - entry.last_used)),
            eviction.reason,
        )
    if len(done.evictions) > LOGGED_EVICTIONS:
        log.info("cache gc:   ... and %d more", len(done.evictions) - LOGGED_EVICTIONS)


def _move(path: Path, target: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.rename(path, target)


def _blob_files(root: Path) -> Iterable[tuple[str, tuple[int, float]]]:
    """(digest, (bytes on disk, mtime)) of every stored blob."""
    folder = root / "sha256"
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return []
    found = []
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        found.append((f"sha256:{entry.name}", (st.st_blocks * 512, st.st_mtime)))
    return found


def _volume_folders(root: Path) -> list[Path]:
    try:
        return [p for p in root.iterdir() if p.is_dir() and not p.name.endswith(".new")]
    except FileNotFoundError:
        return []
