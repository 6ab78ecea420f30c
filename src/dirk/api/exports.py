"""`Directory.export` and `File.export`: write a solved snapshot to the client's host. Never
memoised: each call writes again, as the host may have changed in between."""

from __future__ import annotations

from dirk.api.context import RequestContext
from dirk.api.host import host_path
from dirk.api.registry import Args, leaf
from dirk.api.values import Directory, File, Handle
from dirk.solver import reads


@leaf("Directory", "export", memo=False)
async def directory_export(ctx: RequestContext, parent: Handle | None, args: Args) -> str:
    assert parent is not None and isinstance(parent.value, Directory)
    d = parent.value
    dest = host_path(ctx.workdir, args["path"])
    written = await reads.export_directory(
        ctx.solver, ctx.job, d.ref, d.subdir, dest, wipe=args["wipe"]
    )
    return str(written)


@leaf("File", "export", memo=False)
async def file_export(ctx: RequestContext, parent: Handle | None, args: Args) -> str:
    assert parent is not None and isinstance(parent.value, File)
    f = parent.value
    dest = host_path(ctx.workdir, args["path"])
    written = await reads.export_file(
        ctx.solver, ctx.job, f.ref, f.path, dest, allow_parent_dir=args["allowParentDirPath"]
    )
    return str(written)
