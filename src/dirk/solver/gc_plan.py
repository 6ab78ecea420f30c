"""What the cache holds, and what a collection removes: pure decisions over an index.

The index (`CacheIndex`, read from the database and the disk) knows every cache row with the
layers and blobs it names, every layer with its size, the blobs no row names (image manifests
and configs, downloads: re-fetchable) and the cache volumes. `plan` decides, for a policy and
what live sessions hold, which of them go:

- a layer goes only when no remaining row names it and no session holds it;
- a row or volume a session holds stays;
- layers and blobs that no row names at all go only while no step runs (a running step may be
  about to name them);
- under a size limit, entries go least recently used first, until enough is freed.

Each entry's size is what it alone would free: its blob outputs and the layers it was the
first to name (a layer shared by many rows is counted once, at its oldest row).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

import attrs

from dirk.solver.gc_policy import CachePolicy, human_duration, human_size

#: A cache row's record type by the operation that made it (Dagger's names where it has one).
RECORD_TYPES = {
    "HostDirectory": "source.local",
    "HostFile": "source.local",
    "GitCheckout": "source.git.checkout",
    "HttpFetch": "source.http",
}
REGULAR = "regular"
VOLUME = "exec.cachemount"
INTERNAL = "internal"

#: Key prefixes of the entries that are not cache rows.
VOLUME_PREFIX = "volume:"
BLOB_PREFIX = "blob:"
LAYER_PREFIX = "layer:"


@attrs.frozen
class CacheEntry:
    """One thing the cache keeps, as `dirk cache ls` and `engine.localCache` show it.

    `key` is a cache row's key, `volume:<name>`, `blob:<digest>` (a blob no row names) or
    `layer:<id>` (a layer no row names). Times are Unix seconds."""

    key: str
    record_type: str
    kind: str
    description: str
    size: int
    created: float
    last_used: float
    in_use: bool = False


@attrs.frozen
class RowInfo:
    key: str
    kind: str
    description: str
    created: float
    last_used: float
    layers: frozenset[str]
    #: Blob files holding large exec outputs: digest -> size.
    blobs: Mapping[str, int]


@attrs.frozen
class LayerInfo:
    id: str
    #: The directory's bytes plus those of the image blobs made of it.
    size: int
    created: float
    blobs: tuple[str, ...] = ()


@attrs.frozen
class BlobInfo:
    digest: str
    size: int
    modified: float


@attrs.frozen
class VolumeInfo:
    #: The volume's folder under `v/`.
    folder: str
    name: str
    size: int
    created: float
    last_used: float


@attrs.frozen
class Held:
    """What must stay: cache keys, layers and volume folders in use."""

    keys: frozenset[str] = frozenset()
    layers: frozenset[str] = frozenset()
    volumes: frozenset[str] = frozenset()


@attrs.define
class CacheIndex:
    rows: dict[str, RowInfo] = attrs.field(factory=dict)
    layers: dict[str, LayerInfo] = attrs.field(factory=dict)
    #: Blobs that nothing the database knows names.
    loose_blobs: dict[str, BlobInfo] = attrs.field(factory=dict)
    volumes: dict[str, VolumeInfo] = attrs.field(factory=dict)

    def references(self) -> dict[str, int]:
        """How many rows name each layer."""
        refs = dict.fromkeys(self.layers, 0)
        for row in self.rows.values():
            for layer in row.layers:
                if layer in refs:
                    refs[layer] += 1
        return refs

    def owners(self) -> dict[str, str]:
        """Layer -> the key of the oldest row naming it (whose size counts it)."""
        owner: dict[str, tuple[float, str]] = {}
        for row in self.rows.values():
            for layer in row.layers:
                found = owner.get(layer)
                if found is None or (row.created, row.key) < found:
                    owner[layer] = (row.created, row.key)
        return {layer: key for layer, (_, key) in owner.items()}

    @property
    def total(self) -> int:
        """Bytes of everything the cache holds."""
        return (
            sum(layer.size for layer in self.layers.values())
            + sum(sum(row.blobs.values()) for row in self.rows.values())
            + sum(blob.size for blob in self.loose_blobs.values())
            + sum(volume.size for volume in self.volumes.values())
        )

    def entries(self, held: Held) -> list[CacheEntry]:
        owners = self.owners()
        owned: dict[str, int] = {}
        for layer_id, key in owners.items():
            info = self.layers.get(layer_id)
            if info is not None:
                owned[key] = owned.get(key, 0) + info.size
        found: list[CacheEntry] = []
        for row in self.rows.values():
            found.append(
                CacheEntry(
                    key=row.key,
                    record_type=RECORD_TYPES.get(row.kind, REGULAR),
                    kind=row.kind,
                    description=row.description,
                    size=owned.get(row.key, 0) + sum(row.blobs.values()),
                    created=row.created,
                    last_used=row.last_used,
                    in_use=row.key in held.keys,
                )
            )
        for layer in self.layers.values():
            if layer.id not in owners:
                found.append(
                    CacheEntry(
                        key=LAYER_PREFIX + layer.id,
                        record_type=INTERNAL,
                        kind="Layer",
                        description=f"layer {layer.id}, named by no cache entry",
                        size=layer.size,
                        created=layer.created,
                        last_used=layer.created,
                        in_use=layer.id in held.layers,
                    )
                )
        for blob in self.loose_blobs.values():
            found.append(
                CacheEntry(
                    key=BLOB_PREFIX + blob.digest,
                    record_type=INTERNAL,
                    kind="Blob",
                    description="image manifest, config or download (fetched again if needed)",
                    size=blob.size,
                    created=blob.modified,
                    last_used=blob.modified,
                )
            )
        for volume in self.volumes.values():
            found.append(
                CacheEntry(
                    key=VOLUME_PREFIX + volume.name,
                    record_type=VOLUME,
                    kind="CacheVolume",
                    description=f"cache volume {volume.name}",
                    size=volume.size,
                    created=volume.created,
                    last_used=volume.last_used,
                    in_use=volume.folder in held.volumes,
                )
            )
        return found


@attrs.frozen
class Eviction:
    entry: CacheEntry
    reason: str
    #: What goes: the row's key, the layer's id, the blob's digest or the volume's folder.
    handle: str

    def kept_by(self, removed: frozenset[str]) -> bool:
        """Whether this entry stays, given everything a plan cut down at commit removes
        (`Plan.removed`)."""
        return self.handle not in removed


@attrs.frozen
class Plan:
    """What one collection removes, and why."""

    evictions: tuple[Eviction, ...] = ()
    rows: frozenset[str] = frozenset()
    layers: frozenset[str] = frozenset()
    blobs: frozenset[str] = frozenset()
    volumes: frozenset[str] = frozenset()
    freed: int = 0
    #: Why the collection ran (the policy limit passed), for the log.
    cause: str = ""

    @property
    def removed(self) -> frozenset[str]:
        """Every handle the plan removes (row keys, layer ids, digests, volume folders)."""
        return self.rows | self.layers | self.blobs | self.volumes

    @property
    def empty(self) -> bool:
        return not (self.rows or self.layers or self.blobs or self.volumes)


@attrs.frozen
class Disk:
    total: int
    free: int


@attrs.frozen
class Request:
    """What a collection is asked to do: follow `policy`, or remove everything releasable
    (`everything`), or only the entries with the given `keys`."""

    policy: CachePolicy | None = None
    everything: bool = False
    keys: frozenset[str] | None = None


class _Planner:
    def __init__(self, index: CacheIndex, held: Held, idle: bool) -> None:
        self.index = index
        self.held = held
        self.idle = idle
        self.refs = index.references()
        # Blobs are content-addressed: two rows (or layers) may name one blob file.
        self.blob_refs: dict[str, int] = {}
        for named in (
            *(row.blobs for row in index.rows.values()),
            *(layer.blobs for layer in index.layers.values()),
        ):
            for digest in named:
                self.blob_refs[digest] = self.blob_refs.get(digest, 0) + 1
        self.rows: set[str] = set()
        self.layers: set[str] = set()
        self.blobs: set[str] = set()
        self.volumes: set[str] = set()
        self.evictions: list[Eviction] = []
        self.freed = 0

    def releasable(self, entry: CacheEntry) -> bool:
        if entry.in_use:
            return False
        if entry.key.startswith((LAYER_PREFIX, BLOB_PREFIX)):
            return self.idle
        return True

    def evict(self, entry: CacheEntry, reason: str) -> None:
        key = handle = entry.key
        if key.startswith(VOLUME_PREFIX):
            handle = next(
                v.folder for v in self.index.volumes.values() if VOLUME_PREFIX + v.name == key
            )
            self.volumes.add(handle)
            self.freed += entry.size
        elif key.startswith(BLOB_PREFIX):
            handle = key[len(BLOB_PREFIX) :]
            self.blobs.add(handle)
            self.freed += entry.size
        elif key.startswith(LAYER_PREFIX):
            handle = key[len(LAYER_PREFIX) :]
            self._drop_layer(handle)
        else:
            row = self.index.rows[key]
            self.rows.add(key)
            for digest, size in row.blobs.items():
                if self._release_blob(digest):
                    self.freed += size
            for layer in row.layers:
                if layer in self.refs:
                    self.refs[layer] -= 1
                    if self.refs[layer] == 0:
                        self._drop_layer(layer)
        self.evictions.append(Eviction(entry, reason, handle))

    def _drop_layer(self, layer_id: str) -> None:
        if layer_id in self.held.layers or layer_id in self.layers:
            return
        info = self.index.layers[layer_id]
        self.layers.add(layer_id)
        for digest in info.blobs:
            self._release_blob(digest)
        self.freed += info.size

    def _release_blob(self, digest: str) -> bool:
        """One name of `digest` is gone; True when it was the last (the file goes)."""
        left = self.blob_refs.get(digest, 1) - 1
        self.blob_refs[digest] = left
        if left <= 0:
            self.blobs.add(digest)
            return True
        return False

    def plan(self, cause: str = "") -> Plan:
        return Plan(
            tuple(self.evictions),
            frozenset(self.rows),
            frozenset(self.layers),
            frozenset(self.blobs),
            frozenset(self.volumes),
            self.freed,
            cause,
        )


def plan(
    index: CacheIndex, held: Held, request: Request, disk: Disk, now: float, *, idle: bool
) -> Plan:
    """What to remove for `request`. `now` is the wall-clock time; `idle` says no step runs."""
    planner = _Planner(index, held, idle)
    entries = [e for e in index.entries(held) if planner.releasable(e)]
    # Least recently used first; of two used at once, the larger first.
    entries.sort(key=lambda e: (e.last_used, -e.size, e.key))
    if request.keys is not None:
        for entry in entries:
            if entry.key in request.keys:
                planner.evict(entry, "pruned by key")
        return planner.plan("asked for by key")
    if request.everything or request.policy is None:
        for entry in entries:
            planner.evict(entry, "pruned: everything no session uses")
        return planner.plan("asked to prune everything")
    policy = request.policy
    causes: list[str] = []
    remaining = []
    for entry in entries:
        if entry.key.startswith(LAYER_PREFIX):
            planner.evict(entry, "garbage: no cache entry names it")
        elif policy.keep_duration and now - entry.last_used > policy.keep_duration:
            unused = human_duration(now - entry.last_used)
            keep = human_duration(policy.keep_duration)
            planner.evict(entry, f"unused for {unused}, longer than the keep duration {keep}")
        else:
            remaining.append(entry)
    if planner.evictions:
        causes.append("keep duration and garbage")
    total = index.total
    need = 0
    reasons: list[str] = []
    if policy.max_used_space and total > policy.max_used_space:
        need = total - policy.goal()
        reasons.append(
            f"the cache took {human_size(total)}, over its max used space "
            f"{human_size(policy.max_used_space)}"
        )
    if policy.min_free_space and disk.free < policy.min_free_space:
        need = max(need, policy.min_free_space - disk.free)
        reasons.append(
            f"the disk had {human_size(disk.free)} free, under the min free space "
            f"{human_size(policy.min_free_space)}"
        )
    need = min(need, max(0, total - policy.reserved_space))
    if need > planner.freed:
        why = " and ".join(reasons)
        causes.append(why)
        for entry in remaining:
            if planner.freed >= need:
                break
            planner.evict(entry, f"least recently used: {why}")
    return planner.plan("; ".join(causes))


def row_info(
    key: str,
    result_json: str,
    created: float,
    last_used: float,
    kind: str,
    description: str,
    blob_size: Mapping[str, int],
) -> RowInfo:
    """A cache row as the index keeps it (`blob_size` gives the size of each blob file)."""
    try:
        result = json.loads(result_json)
        layers = frozenset(layer for output in result["outputs"] for layer in output)
    except (ValueError, KeyError, TypeError):
        result, layers = {}, frozenset()
    blobs = {digest: blob_size.get(digest, 0) for digest in _output_blobs(result)}
    return RowInfo(key, kind, description, created, last_used, layers, blobs)


def _output_blobs(result: object) -> Iterable[str]:
    if not isinstance(result, dict):
        return []
    found = []
    for stream in ("stdout", "stderr"):
        value = result.get(stream)
        if isinstance(value, dict) and isinstance(value.get("blob"), str):
            found.append(value["blob"])
    return found
