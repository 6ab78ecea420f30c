"""`Query.http`: a file downloaded from a URL, keyed by its content (downloaded when the key
is needed, or not at all when a checksum names content the engine already holds)."""

from __future__ import annotations

from dirk.api.context import RequestContext
from dirk.api.registry import Args, builds
from dirk.api.secret import load_secret
from dirk.api.values import File, Handle
from dirk.errors import InvalidArgumentError
from dirk.solver.ops import HttpFetch, Ref
from dirk.workers.sources.http import check_checksum, check_url, default_name


@builds("Query", "http")
async def query_http(ctx: RequestContext, parent: Handle | None, args: Args) -> File:
    url = args["url"]
    check_url(url)
    name = args.get("name") or default_name(url)
    if "/" in name or name in (".", ".."):
        raise InvalidArgumentError(f"file name {name!r} must be a plain name, without '/'")
    permissions = args.get("permissions")
    if permissions is None:
        permissions = 0o644
    if not 0 <= permissions <= 0o7777:
        raise InvalidArgumentError(f"permissions {permissions} are not a file mode (0 to 0o7777)")
    checksum = check_checksum(args["checksum"]) if args.get("checksum") else ""
    header = None
    if args.get("authHeader"):
        header = (await load_secret(ctx, args["authHeader"])).ref
    op = HttpFetch(url, name, permissions=permissions, checksum=checksum, auth_header=header)
    if header is not None:
        # Keys are computed without the session's secrets: a download that needs one is
        # made now, with it, and the file is keyed by what it held.
        op, _ = await ctx.solver.sources.keyed_http(op, ctx.table.secrets.plaintext)
    return File(Ref(op), "/" + name)
