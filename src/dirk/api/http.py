"""`Query.http`: a file downloaded from a URL, keyed by its content (downloaded when the key
is needed, or not at all when a checksum names content the engine already holds). With
`experimentalServiceHost` the service is started for the download, made now (as with a
secret header), and the URL's host names it when it is the service's hostname."""

from __future__ import annotations

from dirk.api.context import RequestContext
from dirk.api.registry import Args, builds
from dirk.api.secret import load_secret
from dirk.api.service import service_host
from dirk.api.values import File, Handle
from dirk.errors import InvalidArgumentError
from dirk.solver.ops import HttpFetch, Ref
from dirk.solver.service_hosts import served_hosts
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
    service = service_host(ctx, args.get("experimentalServiceHost"), "http")
    op = HttpFetch(
        url, name, permissions=permissions, checksum=checksum, auth_header=header, service=service
    )
    sources = ctx.solver.sources
    if service is not None and not (checksum and sources.http.has(checksum)):
        # Keys are computed outside any session: a download from a session's service is
        # made now, while the service is held, and the file is keyed by what it held.
        async with served_hosts(ctx.solver.services, ctx.job, service) as hosts:
            op, _ = await sources.keyed_http(op, ctx.table.secrets.plaintext, hosts)
    elif header is not None:
        # Keys are computed without the session's secrets: a download that needs one is
        # made now, with it, and the file is keyed by what it held.
        op, _ = await sources.keyed_http(op, ctx.table.secrets.plaintext)
    return File(Ref(op), "/" + name)
