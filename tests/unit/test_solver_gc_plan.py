"""`gc_plan.plan` over random cache indexes: what a collection may remove, and what it counts.

The properties are the collector's promises: nothing a session holds goes, a layer goes only
with the last row naming it, what no row names goes only while no step runs, `freed` is exactly
what the removed things weigh, and a size limit evicts least recently used first until it is
met (or nothing releasable is left). A few plain examples follow, one story each.
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from dirk.solver.gc_plan import (
    BLOB_PREFIX,
    LAYER_PREFIX,
    VOLUME_PREFIX,
    BlobInfo,
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
from dirk.solver.gc_policy import CachePolicy

NOW = 10_000.0
NO_DISK_PRESSURE = Disk(total=10**12, free=10**12)

sizes = st.integers(0, 1000)
times = st.integers(0, 10_000).map(float)


@st.composite
def indexes(draw: st.DrawFn) -> CacheIndex:
    """An index with rows naming random subsets of layers (some named by no row, some named
    but missing: a row whose layer is gone), loose blobs and volumes. Digests are unique per
    owner: a row's output blobs, a layer's blobs and loose blobs never coincide."""
    layer_ids = [f"L{i}" for i in range(draw(st.integers(0, 8)))]
    index = CacheIndex()
    for layer_id in layer_ids:
        own = tuple(f"sha256:{layer_id}-b{j}" for j in range(draw(st.integers(0, 2))))
        index.layers[layer_id] = LayerInfo(layer_id, draw(sizes), draw(times), own)
    nameable = [*layer_ids, "Lgone1", "Lgone2"]
    for i in range(draw(st.integers(0, 8))):
        key = f"k{i}"
        created = draw(times)
        last_used = created + draw(st.integers(0, 1000))
        layers = frozenset(draw(st.lists(st.sampled_from(nameable), max_size=4)))
        outputs = {f"sha256:{key}-out{j}": draw(sizes) for j in range(draw(st.integers(0, 2)))}
        kind = draw(st.sampled_from(["Exec", "HostDirectory", "GitCheckout", "Copy"]))
        index.rows[key] = RowInfo(key, kind, f"step {i}", created, last_used, layers, outputs)
    for i in range(draw(st.integers(0, 4))):
        digest = f"sha256:loose{i}"
        index.loose_blobs[digest] = BlobInfo(digest, draw(sizes), draw(times))
    for i in range(draw(st.integers(0, 4))):
        created = draw(times)
        index.volumes[f"f{i}"] = VolumeInfo(
            f"f{i}", f"vol{i}", draw(sizes), created, created + draw(st.integers(0, 1000))
        )
    return index


def helds(index: CacheIndex) -> st.SearchStrategy[Held]:
    def subset(items: list[str]) -> st.SearchStrategy[frozenset[str]]:
        if not items:
            return st.just(frozenset())
        return st.frozensets(st.sampled_from(items))

    return st.builds(
        Held,
        keys=subset(sorted(index.rows)),
        layers=subset([*sorted(index.layers), "Lgone1"]),
        volumes=subset(sorted(index.volumes)),
    )


def entry_keys(index: CacheIndex) -> list[str]:
    return [e.key for e in index.entries(Held())]


@st.composite
def policies(draw: st.DrawFn, index: CacheIndex) -> CachePolicy:
    total = index.total

    def limit() -> int:
        return draw(st.one_of(st.just(0), st.integers(0, 2 * total + 10)))

    return CachePolicy(
        max_used_space=limit(),
        min_free_space=limit(),
        reserved_space=limit(),
        target_space=limit(),
        keep_duration=float(draw(st.one_of(st.just(0), st.integers(0, 10_000)))),
    )


@st.composite
def requests(draw: st.DrawFn, index: CacheIndex) -> Request:
    which = draw(st.sampled_from(["policy", "everything", "keys", "none"]))
    if which == "policy":
        return Request(policy=draw(policies(index)))
    if which == "everything":
        return Request(everything=True)
    if which == "keys":
        known = [*entry_keys(index), "k-unknown", "volume:nope"]
        return Request(keys=draw(st.frozensets(st.sampled_from(known))))
    return Request()


@st.composite
def disks(draw: st.DrawFn) -> Disk:
    total = draw(st.integers(1, 20_000))
    return Disk(total=total, free=draw(st.integers(0, total)))


@st.composite
def cases(draw: st.DrawFn) -> tuple[CacheIndex, Held, Request, Disk, bool]:
    index = draw(indexes())
    return index, draw(helds(index)), draw(requests(index)), draw(disks()), draw(st.booleans())


def named_layers(index: CacheIndex, keys: set[str] | frozenset[str]) -> set[str]:
    return {layer for key in keys for layer in index.rows[key].layers}


def releasable_keys(index: CacheIndex, held: Held, idle: bool) -> set[str]:
    """Entry keys `plan` may evict: not in use, and layers/blobs no row names only when idle."""
    return {
        e.key
        for e in index.entries(held)
        if not e.in_use and (idle or not e.key.startswith((LAYER_PREFIX, BLOB_PREFIX)))
    }


def expected_freed(index: CacheIndex, chosen: Plan) -> int:
    """What the plan's removals weigh: layers (their blobs included in their size), loose
    blobs, volumes, and the output blobs of removed rows."""
    return (
        sum(index.layers[layer].size for layer in chosen.layers)
        + sum(index.loose_blobs[d].size for d in chosen.blobs if d in index.loose_blobs)
        + sum(index.volumes[folder].size for folder in chosen.volumes)
        + sum(sum(index.rows[key].blobs.values()) for key in chosen.rows)
    )


SETTINGS = settings(max_examples=200, deadline=None)


@SETTINGS
@given(cases())
def test_nothing_held_is_planned(case: tuple[CacheIndex, Held, Request, Disk, bool]) -> None:
    index, held, request, disk, idle = case
    chosen = plan(index, held, request, disk, NOW, idle=idle)
    assert not chosen.rows & held.keys
    assert not chosen.layers & held.layers
    assert not chosen.volumes & held.volumes
    # A held row keeps its layers too.
    assert not chosen.layers & named_layers(index, held.keys)


@SETTINGS
@given(cases())
def test_a_planned_layer_is_named_by_no_row_that_stays(
    case: tuple[CacheIndex, Held, Request, Disk, bool],
) -> None:
    index, held, request, disk, idle = case
    chosen = plan(index, held, request, disk, NOW, idle=idle)
    staying = set(index.rows) - chosen.rows
    assert not chosen.layers & named_layers(index, staying)
    assert chosen.rows <= set(index.rows)
    assert chosen.layers <= set(index.layers)
    assert chosen.volumes <= set(index.volumes)


@SETTINGS
@given(cases())
def test_while_a_step_runs_nothing_unnamed_goes(
    case: tuple[CacheIndex, Held, Request, Disk, bool],
) -> None:
    index, held, request, disk, _ = case
    chosen = plan(index, held, request, disk, NOW, idle=False)
    orphans = set(index.layers) - named_layers(index, set(index.rows))
    assert not chosen.blobs & set(index.loose_blobs)
    assert not chosen.layers & orphans


@SETTINGS
@given(cases())
def test_freed_is_what_the_removals_weigh(
    case: tuple[CacheIndex, Held, Request, Disk, bool],
) -> None:
    index, held, request, disk, idle = case
    chosen = plan(index, held, request, disk, NOW, idle=idle)
    assert chosen.freed == expected_freed(index, chosen)
    assert chosen.freed <= index.total


@SETTINGS
@given(cases())
def test_evictions_name_what_the_plan_removes(
    case: tuple[CacheIndex, Held, Request, Disk, bool],
) -> None:
    index, held, request, disk, idle = case
    chosen = plan(index, held, request, disk, NOW, idle=idle)
    keys = [e.entry.key for e in chosen.evictions]
    assert len(keys) == len(set(keys))
    assert all(e.reason for e in chosen.evictions)
    assert set(keys) <= releasable_keys(index, held, idle)
    assert all(e.handle in chosen.removed for e in chosen.evictions if e.entry.key in index.rows)
    assert {k for k in keys if k in index.rows} == chosen.rows
    volumes = {e.handle for e in chosen.evictions if e.entry.key.startswith(VOLUME_PREFIX)}
    assert volumes == chosen.volumes
    # Every removed row's output blobs and every removed layer's blobs go with it.
    for key in chosen.rows:
        assert set(index.rows[key].blobs) <= chosen.blobs
    for layer in chosen.layers:
        assert set(index.layers[layer].blobs) <= chosen.blobs
    if chosen.evictions:
        assert chosen.cause
    if request.keys is not None:
        assert set(keys) <= request.keys


@SETTINGS
@given(indexes(), disks(), st.booleans())
def test_everything_with_nothing_held_while_idle_removes_everything(
    index: CacheIndex, disk: Disk, use_none: bool
) -> None:
    request = Request() if use_none else Request(everything=True)
    chosen = plan(index, Held(), request, disk, NOW, idle=True)
    assert chosen.rows == set(index.rows)
    assert chosen.layers == set(index.layers)
    assert chosen.volumes == set(index.volumes)
    assert set(index.loose_blobs) <= chosen.blobs
    assert chosen.freed == index.total


@SETTINGS
@given(cases())
def test_everything_keeps_only_what_is_held_or_unnamed_while_busy(
    case: tuple[CacheIndex, Held, Request, Disk, bool],
) -> None:
    index, held, _, disk, idle = case
    chosen = plan(index, held, Request(everything=True), disk, NOW, idle=idle)
    assert {e.entry.key for e in chosen.evictions} == releasable_keys(index, held, idle)
    assert chosen.rows == set(index.rows) - held.keys


@st.composite
def policy_cases(draw: st.DrawFn) -> tuple[CacheIndex, Held, CachePolicy, Disk, bool]:
    index = draw(indexes())
    return index, draw(helds(index)), draw(policies(index)), draw(disks()), draw(st.booleans())


def _size_evicted(chosen: Plan) -> list[str]:
    return [e.entry.key for e in chosen.evictions if e.reason.startswith("least recently used")]


@SETTINGS
@given(policy_cases())
def test_a_size_limit_is_met_or_nothing_releasable_is_left(
    case: tuple[CacheIndex, Held, CachePolicy, Disk, bool],
) -> None:
    index, held, policy, disk, idle = case
    chosen = plan(index, held, Request(policy=policy), disk, NOW, idle=idle)
    left = index.total - chosen.freed
    evicted = {e.entry.key for e in chosen.evictions}
    exhausted = evicted == releasable_keys(index, held, idle)
    floor = policy.reserved_space
    if policy.max_used_space and index.total > policy.max_used_space:
        assert left <= max(policy.goal(), floor) or exhausted
    if policy.min_free_space and disk.free < policy.min_free_space:
        assert disk.free + chosen.freed >= policy.min_free_space or left <= floor or exhausted


@SETTINGS
@given(policy_cases())
def test_under_its_limits_only_the_expired_and_garbage_go(
    case: tuple[CacheIndex, Held, CachePolicy, Disk, bool],
) -> None:
    index, held, policy, disk, idle = case
    over = (policy.max_used_space and index.total > policy.max_used_space) or (
        policy.min_free_space and disk.free < policy.min_free_space
    )
    chosen = plan(index, held, Request(policy=policy), disk, NOW, idle=idle)
    for eviction in chosen.evictions:
        entry = eviction.entry
        expired = bool(policy.keep_duration) and NOW - entry.last_used > policy.keep_duration
        garbage = entry.key.startswith(LAYER_PREFIX)
        assert expired or garbage or over
        if not over:
            assert not eviction.reason.startswith("least recently used")
    # And every expired releasable entry goes, whatever the size.
    releasable = releasable_keys(index, held, idle)
    evicted = {e.entry.key for e in chosen.evictions}
    for entry in index.entries(held):
        expired = bool(policy.keep_duration) and NOW - entry.last_used > policy.keep_duration
        if entry.key in releasable and expired:
            assert entry.key in evicted


@SETTINGS
@given(policy_cases())
def test_size_evictions_go_least_recently_used_first(
    case: tuple[CacheIndex, Held, CachePolicy, Disk, bool],
) -> None:
    index, held, policy, disk, idle = case
    chosen = plan(index, held, Request(policy=policy), disk, NOW, idle=idle)
    by_key = {e.key: e for e in index.entries(held)}
    for_size = _size_evicted(chosen)
    if not for_size:
        return
    evicted = {e.entry.key for e in chosen.evictions}
    kept = releasable_keys(index, held, idle) - evicted
    newest_evicted = max(by_key[k].last_used for k in for_size)
    assert all(by_key[k].last_used >= newest_evicted for k in kept)
    # Least recently used first also in the order of the plan.
    used = [by_key[k].last_used for k in for_size]
    assert used == sorted(used)


# --- examples -------------------------------------------------------------------------------


def _two_builds() -> CacheIndex:
    """An old build and a new one on the same base layer."""
    index = CacheIndex()
    index.layers["base"] = LayerInfo("base", 500, 1.0)
    index.layers["old-top"] = LayerInfo("old-top", 100, 1.0, ("sha256:old-top-gz",))
    index.layers["new-top"] = LayerInfo("new-top", 200, 5.0)
    index.rows["old"] = RowInfo(
        "old", "Exec", "old build", 1.0, 2.0, frozenset({"base", "old-top"}), {"sha256:log": 7}
    )
    index.rows["new"] = RowInfo(
        "new", "Exec", "new build", 5.0, 9.0, frozenset({"base", "new-top"}), {}
    )
    return index


def test_evicting_an_old_build_keeps_the_base_it_shares_with_a_new_one() -> None:
    index = _two_builds()
    assert index.total == 807
    # Over 700 bytes: the least recently used build goes, down to 750.
    policy = CachePolicy(max_used_space=750)
    chosen = plan(index, Held(), Request(policy=policy), NO_DISK_PRESSURE, NOW, idle=True)
    assert chosen.rows == {"old"}
    assert chosen.layers == {"old-top"}
    assert chosen.blobs == {"sha256:log", "sha256:old-top-gz"}
    assert chosen.freed == 107
    [eviction] = chosen.evictions
    assert eviction.entry.description == "old build"
    assert "max used space" in eviction.reason
    assert "max used space" in chosen.cause


def test_a_shared_layer_counts_in_the_size_of_its_oldest_row() -> None:
    sizes = {e.key: e.size for e in _two_builds().entries(Held())}
    assert sizes == {"old": 500 + 100 + 7, "new": 200}


def test_entries_say_what_sessions_hold() -> None:
    index = _two_builds()
    index.layers["stray"] = LayerInfo("stray", 3, 1.0)
    index.loose_blobs["sha256:manifest"] = BlobInfo("sha256:manifest", 4, 1.0)
    index.volumes["f1"] = VolumeInfo("f1", "go-build", 9, 1.0, 3.0)
    index.volumes["f2"] = VolumeInfo("f2", "npm", 9, 1.0, 3.0)
    held = Held(keys=frozenset({"new"}), layers=frozenset({"stray"}), volumes=frozenset({"f2"}))
    in_use = {e.key: e.in_use for e in index.entries(held)}
    assert in_use == {
        "old": False,
        "new": True,
        LAYER_PREFIX + "stray": True,
        BLOB_PREFIX + "sha256:manifest": False,
        VOLUME_PREFIX + "go-build": False,
        VOLUME_PREFIX + "npm": True,
    }
    records = {e.key: e.record_type for e in index.entries(held)}
    assert records["old"] == "regular"
    assert records[VOLUME_PREFIX + "npm"] == "exec.cachemount"
    assert records[LAYER_PREFIX + "stray"] == "internal"


def test_a_held_build_stays_even_when_everything_is_pruned() -> None:
    index = _two_builds()
    held = Held(keys=frozenset({"old"}))
    chosen = plan(index, held, Request(everything=True), NO_DISK_PRESSURE, NOW, idle=True)
    assert chosen.rows == {"new"}
    assert chosen.layers == {"new-top"}
    assert chosen.freed == 200


def test_an_entry_unused_longer_than_the_keep_duration_goes_whatever_the_size() -> None:
    index = _two_builds()
    policy = CachePolicy(keep_duration=NOW - 5.0)
    chosen = plan(index, Held(), Request(policy=policy), NO_DISK_PRESSURE, NOW, idle=True)
    assert chosen.rows == {"old"}
    [eviction] = chosen.evictions
    assert "keep duration" in eviction.reason


def test_while_a_step_runs_a_stray_layer_and_a_manifest_stay() -> None:
    index = _two_builds()
    index.layers["stray"] = LayerInfo("stray", 3, 1.0)
    index.loose_blobs["sha256:manifest"] = BlobInfo("sha256:manifest", 4, 1.0)
    busy = plan(index, Held(), Request(everything=True), NO_DISK_PRESSURE, NOW, idle=False)
    assert "stray" not in busy.layers
    assert "sha256:manifest" not in busy.blobs
    idle = plan(index, Held(), Request(everything=True), NO_DISK_PRESSURE, NOW, idle=True)
    assert "stray" in idle.layers
    assert "sha256:manifest" in idle.blobs


def test_the_reserved_space_stops_size_evictions() -> None:
    index = _two_builds()
    # Over the limit, but the whole cache is within the reserved space: nothing goes.
    policy = CachePolicy(max_used_space=100, reserved_space=1000)
    chosen = plan(index, Held(), Request(policy=policy), NO_DISK_PRESSURE, NOW, idle=True)
    assert chosen.empty


def test_a_full_disk_evicts_until_enough_is_free() -> None:
    index = _two_builds()
    policy = CachePolicy(min_free_space=100)
    chosen = plan(index, Held(), Request(policy=policy), Disk(total=1000, free=50), NOW, idle=True)
    assert chosen.rows == {"old"}
    assert "min free space" in chosen.cause


def test_pruning_by_key_removes_only_those() -> None:
    index = _two_builds()
    index.volumes["f1"] = VolumeInfo("f1", "go-build", 9, 1.0, 3.0)
    request = Request(keys=frozenset({"new", VOLUME_PREFIX + "go-build"}))
    chosen = plan(index, Held(), request, NO_DISK_PRESSURE, NOW, idle=True)
    assert chosen.rows == {"new"}
    assert chosen.volumes == {"f1"}
    assert chosen.layers == {"new-top"}
    assert chosen.freed == 209


def test_an_output_blob_two_rows_share_stays_with_the_row_that_stays() -> None:
    index = CacheIndex()
    same_log = {"sha256:same-log": 50}
    index.rows["a"] = RowInfo("a", "Exec", "a", 1.0, 1.0, frozenset(), same_log)
    index.rows["b"] = RowInfo("b", "Exec", "b", 2.0, 9.0, frozenset(), same_log)
    chosen = plan(index, Held(), Request(keys=frozenset({"a"})), NO_DISK_PRESSURE, NOW, idle=True)
    assert chosen.rows == {"a"}
    assert "sha256:same-log" not in chosen.blobs


def test_row_info_reads_layers_and_output_blobs_from_the_result() -> None:
    result = {
        "outputs": [["base", "top"], ["base"]],
        "stdout": {"blob": "sha256:out"},
        "stderr": "short text",
    }
    info = row_info("k", json.dumps(result), 1.0, 2.0, "Exec", "run", {"sha256:out": 42})
    assert info.layers == {"base", "top"}
    assert dict(info.blobs) == {"sha256:out": 42}
    broken = row_info("k", "{not json", 1.0, 2.0, "Exec", "run", {})
    assert broken.layers == frozenset()
    assert dict(broken.blobs) == {}
