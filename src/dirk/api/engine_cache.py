"""`Engine` and `EngineCache`: the engine's name, and its cache as Dagger's
`engine { localCache { ... } }` shows it: the policy, the entries, and pruning (`solver.gc`).

The cache holds every user's entries, so only sessions of the engine's own user (root) may
list or prune it; anyone else gets a `CacheAccessError`.
"""

from __future__ import annotations

import socket
import time

from dirk.api.context import RequestContext
from dirk.api.ids import identity
from dirk.api.registry import Args, builds, leaf
from dirk.api.values import CacheEntrySet, EngineRoot, Handle
from dirk.errors import CacheAccessError
from dirk.solver.gc_plan import CacheEntry, Request


@builds("Query", "engine")
async def query_engine(ctx: RequestContext, parent: Handle | None, args: Args) -> EngineRoot:
    return EngineRoot()


@builds("Engine", "localCache")
async def engine_local_cache(ctx: RequestContext, parent: Handle | None, args: Args) -> EngineRoot:
    return EngineRoot(cache=True)


@leaf("Engine", "name", memo=False)
async def engine_name(ctx: RequestContext, parent: Handle | None, args: Args) -> str:
    return f"dirk@{socket.gethostname()}"


def _policy_leaf(field: str, attribute: str) -> None:
    async def resolve(ctx: RequestContext, parent: Handle | None, args: Args) -> int:
        value = getattr(ctx.engine.gc.policy, attribute)
        return int(value)

    leaf("EngineCache", field, memo=False)(resolve)


for _field, _attribute in (
    ("maxUsedSpace", "max_used_space"),
    ("minFreeSpace", "min_free_space"),
    ("reservedSpace", "reserved_space"),
    ("targetSpace", "target_space"),
):
    _policy_leaf(_field, _attribute)


def _check_access(ctx: RequestContext, what: str) -> None:
    if not ctx.host.same_as_engine:
        raise CacheAccessError(
            f"only the engine's own user may {what} its cache (it holds every user's "
            f"entries); this session belongs to uid {ctx.session.owner.uid}: run it as root, "
            "e.g. `sudo dirk cache ...`"
        )


@leaf("EngineCache", "entrySet", memo=False)
async def engine_cache_entry_set(ctx: RequestContext, parent: Handle | None, args: Args) -> Handle:
    assert parent is not None
    _check_access(ctx, "list")
    entries = await ctx.engine.gc.entries()
    key = args["key"]
    if key:
        entries = [e for e in entries if e.key == key]
    entries.sort(key=lambda e: (-e.size, -e.last_used, e.key))
    # Each read is its own set: the cache changes between two reads.
    ident = identity(parent.ident, "entrySet", {**args, "read": time.time_ns()})
    return ctx.table.add(Handle("EngineCacheEntrySet", ident, CacheEntrySet(tuple(entries))))


@leaf("EngineCache", "prune", memo=False)
async def engine_cache_prune(ctx: RequestContext, parent: Handle | None, args: Args) -> None:
    _check_access(ctx, "prune")
    gc = ctx.engine.gc
    if args["key"]:
        request = Request(keys=frozenset([args["key"]]))
    else:
        overrides = {
            name: args[arg]
            for name, arg in (
                ("max_used_space", "maxUsedSpace"),
                ("reserved_space", "reservedSpace"),
                ("min_free_space", "minFreeSpace"),
                ("target_space", "targetSpace"),
                ("keep_duration", "keepDuration"),
            )
        }
        disk_total = gc.disk().total
        if args["useDefaultPolicy"]:
            policy = gc.policy.overridden(disk_total=disk_total, **overrides)
            request = Request(policy=policy)
        elif any(value.strip() for value in overrides.values()):
            base = type(gc.policy)()  # no limits but those given
            request = Request(policy=base.overridden(disk_total=disk_total, **overrides))
        else:
            request = Request(everything=True)
    await gc.prune(request)


def _set(parent: Handle | None) -> CacheEntrySet:
    assert parent is not None and isinstance(parent.value, CacheEntrySet)
    return parent.value


@leaf("EngineCacheEntrySet", "entries", memo=False)
async def entry_set_entries(ctx: RequestContext, parent: Handle | None, args: Args) -> list[Handle]:
    assert parent is not None
    return [
        ctx.table.add(
            Handle("EngineCacheEntry", identity(parent.ident, "entries", {"key": e.key}), e)
        )
        for e in _set(parent).entries
    ]


@leaf("EngineCacheEntrySet", "entryCount", memo=False)
async def entry_set_count(ctx: RequestContext, parent: Handle | None, args: Args) -> int:
    return len(_set(parent).entries)


@leaf("EngineCacheEntrySet", "diskSpaceBytes", memo=False)
async def entry_set_size(ctx: RequestContext, parent: Handle | None, args: Args) -> int:
    return sum(e.size for e in _set(parent).entries)


def _entry(parent: Handle | None) -> CacheEntry:
    assert parent is not None and isinstance(parent.value, CacheEntry)
    return parent.value


def _entry_leaf(field: str, read: object) -> None:
    async def resolve(ctx: RequestContext, parent: Handle | None, args: Args) -> object:
        return read(_entry(parent))  # type: ignore[operator]

    leaf("EngineCacheEntry", field, memo=False)(resolve)


_NANO = 1_000_000_000
for _name, _read in (
    ("activelyUsed", lambda e: e.in_use),
    ("createdTimeUnixNano", lambda e: int(e.created * _NANO)),
    ("dagqlCall", lambda e: e.kind),
    ("description", lambda e: e.description),
    ("diskSpaceBytes", lambda e: e.size),
    ("key", lambda e: e.key),
    ("mostRecentUseTimeUnixNano", lambda e: int(e.last_used * _NANO)),
    ("recordType", lambda e: e.record_type),
    ("recordTypes", lambda e: [e.record_type]),
):
    _entry_leaf(_name, _read)
