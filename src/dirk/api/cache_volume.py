"""`CacheVolume`: a named directory that outlives runs. The value is the key (plus how to seed
and share it); execs mount it as an `ExecMount` of kind "cache"."""

from __future__ import annotations

from dirk.api.context import RequestContext
from dirk.api.registry import Args, builds
from dirk.api.values import CacheVolume, Directory, Handle
from dirk.errors import InvalidArgumentError


@builds("Query", "cacheVolume")
async def query_cache_volume(ctx: RequestContext, parent: Handle | None, args: Args) -> CacheVolume:
    key = args["key"]
    if not key:
        raise InvalidArgumentError("a cache volume needs a non-empty key")
    source = None
    if args.get("source"):
        loaded = ctx.load(args["source"], "Directory").value
        assert isinstance(loaded, Directory)
        source = loaded
    return CacheVolume(key, source, args["sharing"], args["owner"] or "")
