"""`Container`: a root filesystem, mounts and an image configuration, built lazily.

`from` pins an image (a registry round-trip for its config, no layers); `withExec` adds an
`Exec` whose output 0 becomes the rootfs and whose other outputs become the new content of the
writable bind mounts, so the next exec sees what this one wrote. Only leaves (`stdout`,
`exitCode`, `sync`, file contents, ...) run anything.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import attrs

from dirk.api.container_ops import (
    command,
    default_platform,
    directory_at,
    exposed_ports,
    file_at,
    image_healthcheck,
    merge_pairs,
    owned,
    owned_file,
    parse_env,
    set_pair,
    with_exec,
    with_mount,
    write_at,
)
from dirk.api.context import RequestContext
from dirk.api.directory import (
    SCRATCH,
    with_directory,
    with_file,
    with_new_file,
)
from dirk.api.ids import format_id, identity
from dirk.api.paths import container_path, expand
from dirk.api.registry import Args, builds, leaf
from dirk.api.secret import load_secret
from dirk.api.values import (
    CacheVolume,
    Container,
    Directory,
    EnvVariable,
    File,
    Handle,
    Label,
    Mount,
)
from dirk.errors import InvalidArgumentError
from dirk.solver.ops import Exec, HostServiceDef, ImagePull, Ref, ServiceDef
from dirk.solver.service_hosts import served_registry
from dirk.workers.images.config import ResolvedImage
from dirk.workers.images.platform import Platform
from dirk.workers.images.registry import using_registry_endpoints

if TYPE_CHECKING:
    from dirk.solver.results import ExecOutcome

# --- resolution helpers --------------------------------------------------------------------------


def require_root_session(ctx: RequestContext, what: str) -> None:
    """Privileges beyond a container's defaults are as good as root on the host: only a
    session whose owner is root may ask for them."""
    owner = ctx.session.owner
    if owner.uid != 0:
        raise InvalidArgumentError(
            f"{what} needs a session opened by root: it would give the container root's "
            f"powers on the host, and this session belongs to uid {owner.uid}. Run the "
            "pipeline as root, or leave the privileges out"
        )


def _ctr(parent: Handle | None) -> Container:
    assert parent is not None and isinstance(parent.value, Container)
    return parent.value


async def exec_outcome(ctx: RequestContext, op: Exec) -> ExecOutcome:
    result = await ctx.solver.result(ctx.job, op)
    assert result.exec is not None, "an Exec result carries its outcome"
    return result.exec


def last_or_default_exec(c: Container) -> Exec:
    """The last exec, or (as Dagger does for stdout & co.) the default command."""
    if c.last_exec is not None:
        return c.last_exec
    op = with_exec(c, command(c, (), use_entrypoint=True)).last_exec
    assert op is not None
    return op


def _path(c: Container, args: Args, name: str = "path") -> str:
    raw: str = args[name]
    if args.get("expand"):
        raw = expand(raw, dict(c.env))
    return container_path(c.workdir, raw)


# --- Query -------------------------------------------------------------------------------------


@builds("Query", "container")
async def query_container(ctx: RequestContext, parent: Handle | None, args: Args) -> Container:
    requested = args.get("platform")
    chosen = str(Platform.parse(requested)) if requested else default_platform()
    return Container(rootfs=SCRATCH, platform=chosen)


@leaf("Query", "defaultPlatform", memo=False)
async def query_default_platform(ctx: RequestContext, parent: Handle | None, args: Args) -> str:
    return default_platform()


# --- image and exec ----------------------------------------------------------------------------


@builds("Container", "from")
async def container_from(ctx: RequestContext, parent: Handle | None, args: Args) -> Container:
    from dirk.api.service import service_host  # (it imports this module)

    registry = service_host(ctx, args.get("registryService"), "from")
    return await from_image(ctx, _ctr(parent), args["address"], registry)


async def from_image(
    ctx: RequestContext,
    c: Container,
    address: str,
    registry_service: ServiceDef | HostServiceDef | None = None,
) -> Container:
    """`c` with the root filesystem and configuration of the image `address` (pinned by its
    manifest digest once per session), its registry reached at `registry_service` if given
    (started for the resolve, and again for the pull)."""
    table = ctx.table

    async def resolve() -> ResolvedImage:
        services = ctx.solver.services
        async with served_registry(services, ctx.job, registry_service, address) as reached:
            with using_registry_endpoints(reached):
                return await ctx.solver.resolve_image(ctx.job, address, c.platform)

    key = (
        (address, c.platform)
        if registry_service is None
        else (address, c.platform, registry_service)
    )
    resolved = await table.once(table.images, key, resolve)
    config = resolved.config
    pull = ImagePull(address, resolved.manifest_digest, c.platform, registry_service)
    return attrs.evolve(
        c,
        rootfs=Directory(Ref(pull), "/"),
        env=merge_pairs(c.env, parse_env(config.env)),
        workdir=config.workdir,
        user=config.user,
        entrypoint=config.entrypoint,
        default_args=config.cmd,
        labels=merge_pairs(c.labels, config.labels),
        exposed_ports=config.exposed_ports,
        healthcheck=image_healthcheck(config.healthcheck),
        last_exec=None,
        base_config=resolved.config_digest,
    )


@builds("Container", "withExec")
async def container_with_exec(ctx: RequestContext, parent: Handle | None, args: Args) -> Container:
    c = _ctr(parent)
    if args["redirectStdin"] and args["stdin"]:
        raise InvalidArgumentError(
            "withExec: give the command's standard input as stdin or as redirectStdin (a file "
            "in the container), not both"
        )
    if args["insecureRootCapabilities"]:
        require_root_session(ctx, "withExec(insecureRootCapabilities: true)")
    argv: list[str] = list(args["args"])
    if args["expand"]:
        env = dict(c.env)
        argv = [expand(a, env) for a in argv]
    redirect_stdin = args["redirectStdin"]
    redirect_stdout = args["redirectStdout"]
    redirect_stderr = args["redirectStderr"]
    return with_exec(
        c,
        command(c, argv, bool(args["useEntrypoint"])),
        stdin=args["stdin"].encode() if args["stdin"] else None,
        expect=args["expect"],
        insecure_root_capabilities=bool(args["insecureRootCapabilities"]),
        redirect_stdin=container_path(c.workdir, redirect_stdin) if redirect_stdin else "",
        redirect_stdout=container_path(c.workdir, redirect_stdout) if redirect_stdout else "",
        redirect_stderr=container_path(c.workdir, redirect_stderr) if redirect_stderr else "",
        nesting=bool(args["experimentalPrivilegedNesting"]),
    )


@leaf("Container", "stdout")
async def container_stdout(ctx: RequestContext, parent: Handle | None, args: Args) -> str:
    outcome = await exec_outcome(ctx, last_or_default_exec(_ctr(parent)))
    return outcome.stdout.decode("utf-8", errors="replace")


@leaf("Container", "stderr")
async def container_stderr(ctx: RequestContext, parent: Handle | None, args: Args) -> str:
    outcome = await exec_outcome(ctx, last_or_default_exec(_ctr(parent)))
    return outcome.stderr.decode("utf-8", errors="replace")


@leaf("Container", "exitCode")
async def container_exit_code(ctx: RequestContext, parent: Handle | None, args: Args) -> int:
    return (await exec_outcome(ctx, last_or_default_exec(_ctr(parent)))).exit_code


@leaf("Container", "sync")
async def container_sync(ctx: RequestContext, parent: Handle | None, args: Args) -> str:
    assert parent is not None
    c = _ctr(parent)
    refs = [c.rootfs.ref]
    for m in c.mounts:
        source = m.directory.ref if m.directory else m.file.ref if m.file else None
        if source is not None:
            refs.append(source)
    await ctx.solver.solve_all(ctx.job, refs)
    return format_id(parent.type_name, parent.ident)


# --- configuration -----------------------------------------------------------------------------


@builds("Container", "withEnvVariable")
async def container_with_env_variable(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Container:
    c = _ctr(parent)
    value: str = args["value"]
    if args["expand"]:
        value = expand(value, dict(c.env))
    name = args["name"]
    secret_env = tuple(p for p in c.secret_env if p[0] != name)
    return attrs.evolve(c, env=set_pair(c.env, name, value), secret_env=secret_env)


@builds("Container", "withoutEnvVariable")
async def container_without_env_variable(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Container:
    c = _ctr(parent)
    return attrs.evolve(c, env=tuple(p for p in c.env if p[0] != args["name"]))


@leaf("Container", "envVariable", memo=False)
async def container_env_variable(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> str | None:
    return dict(_ctr(parent).env).get(args["name"])


def items(
    ctx: RequestContext, parent: Handle, field: str, type_name: str, values: Iterable[object]
) -> list[Handle]:
    handles = []
    for index, value in enumerate(values):
        ident = identity(parent.ident, field, {"index": index})
        handles.append(ctx.table.add(Handle(type_name, ident, value)))  # type: ignore[arg-type]
    return handles


@leaf("Container", "envVariables")
async def container_env_variables(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> list[Handle]:
    assert parent is not None
    env = [EnvVariable(n, v) for n, v in _ctr(parent).env]
    return items(ctx, parent, "envVariables", "EnvVariable", env)


@builds("Container", "withWorkdir")
async def container_with_workdir(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Container:
    c = _ctr(parent)
    return attrs.evolve(c, workdir=_path(c, args))


@leaf("Container", "workdir", memo=False)
async def container_workdir(ctx: RequestContext, parent: Handle | None, args: Args) -> str:
    return _ctr(parent).workdir


@builds("Container", "withUser")
async def container_with_user(ctx: RequestContext, parent: Handle | None, args: Args) -> Container:
    return attrs.evolve(_ctr(parent), user=args["name"])


@leaf("Container", "user", memo=False)
async def container_user(ctx: RequestContext, parent: Handle | None, args: Args) -> str:
    return _ctr(parent).user


@builds("Container", "withEntrypoint")
async def container_with_entrypoint(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Container:
    c = _ctr(parent)
    default_args = c.default_args if args["keepDefaultArgs"] else ()
    return attrs.evolve(c, entrypoint=tuple(args["args"]), default_args=default_args)


@leaf("Container", "entrypoint", memo=False)
async def container_entrypoint(ctx: RequestContext, parent: Handle | None, args: Args) -> list[str]:
    return list(_ctr(parent).entrypoint)


@builds("Container", "withDefaultArgs")
async def container_with_default_args(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Container:
    return attrs.evolve(_ctr(parent), default_args=tuple(args["args"]))


@leaf("Container", "defaultArgs", memo=False)
async def container_default_args(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> list[str]:
    return list(_ctr(parent).default_args)


@builds("Container", "withLabel")
async def container_with_label(ctx: RequestContext, parent: Handle | None, args: Args) -> Container:
    c = _ctr(parent)
    return attrs.evolve(c, labels=set_pair(c.labels, args["name"], args["value"]))


@leaf("Container", "label", memo=False)
async def container_label(ctx: RequestContext, parent: Handle | None, args: Args) -> str | None:
    return dict(_ctr(parent).labels).get(args["name"])


@leaf("Container", "labels")
async def container_labels(ctx: RequestContext, parent: Handle | None, args: Args) -> list[Handle]:
    assert parent is not None
    labels = [Label(n, v) for n, v in _ctr(parent).labels]
    return items(ctx, parent, "labels", "Label", labels)


@leaf("Container", "exposedPorts")
async def container_exposed_ports(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> list[Handle]:
    assert parent is not None
    return items(ctx, parent, "exposedPorts", "Port", exposed_ports(_ctr(parent)))


@builds("Container", "withSecretVariable")
async def container_with_secret_variable(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Container:
    """The variable replaces a plain one of the same name; its value reaches execs only."""
    c = _ctr(parent)
    name: str = args["name"]
    if not name or "=" in name:
        raise InvalidArgumentError(
            f"withSecretVariable: {name!r} is not a variable name (non-empty, without '=')"
        )
    secret = await load_secret(ctx, args["secret"])
    secret_env = (*(p for p in c.secret_env if p[0] != name), (name, secret.ref))
    env = tuple(p for p in c.env if p[0] != name)
    return attrs.evolve(c, env=env, secret_env=secret_env)


@builds("Container", "withoutSecretVariable")
async def container_without_secret_variable(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Container:
    c = _ctr(parent)
    return attrs.evolve(c, secret_env=tuple(p for p in c.secret_env if p[0] != args["name"]))


# --- mounts ------------------------------------------------------------------------------------


@builds("Container", "withMountedDirectory")
async def container_with_mounted_directory(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Container:
    c = _ctr(parent)
    source = ctx.load(args["source"], "Directory").value
    assert isinstance(source, Directory)
    mount = Mount(
        _path(c, args),
        "directory",
        directory=owned(c, source, args["owner"]),
        readonly=bool(args["readOnly"]),
    )
    return with_mount(c, mount)


@builds("Container", "withMountedFile")
async def container_with_mounted_file(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Container:
    c = _ctr(parent)
    source = ctx.load(args["source"], "File").value
    assert isinstance(source, File)
    return with_mount(c, Mount(_path(c, args), "file", file=owned_file(c, source, args["owner"])))


@builds("Container", "withMountedSecret")
async def container_with_mounted_secret(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Container:
    c = _ctr(parent)
    secret = await load_secret(ctx, args["source"])
    mode: int = args["mode"]  # checked to be 0..0o7777 with every mode (api.validate)
    mount = Mount(_path(c, args), "secret", secret=secret.ref, owner=args["owner"], mode=mode)
    return with_mount(c, mount)


@builds("Container", "withMountedCache")
async def container_with_mounted_cache(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Container:
    c = _ctr(parent)
    volume = ctx.load(args["cache"], "CacheVolume").value
    assert isinstance(volume, CacheVolume)
    if args.get("source"):
        seed = ctx.load(args["source"], "Directory").value
        assert isinstance(seed, Directory)
        volume = attrs.evolve(volume, source=seed)
    owner = args["owner"] or volume.owner
    if volume.source is not None and owner:
        volume = attrs.evolve(volume, source=owned(c, volume.source, owner))
    # The mount's sharing mode wins when given; else the volume's own.
    sharing = args["sharing"] if args["sharing"] != "SHARED" else volume.sharing
    return with_mount(c, Mount(_path(c, args), "cache", cache=volume, sharing=sharing))


@builds("Container", "withMountedTemp")
async def container_with_mounted_temp(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Container:
    c = _ctr(parent)
    size = args.get("size") or 0
    if size < 0:
        raise InvalidArgumentError(f"withMountedTemp: size must not be negative, got {size}")
    return with_mount(c, Mount(_path(c, args), "tmpfs", size=size))


# --- files -------------------------------------------------------------------------------------


@builds("Container", "withNewFile")
async def container_with_new_file(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Container:
    c = _ctr(parent)
    contents: bytes = args["contents"].encode()

    def change(d: Directory, rel: str) -> Directory:
        return with_new_file(d, rel, contents, args["permissions"], args["owner"])

    return write_at(c, _path(c, args), change)


@builds("Container", "withFile")
async def container_with_file(ctx: RequestContext, parent: Handle | None, args: Args) -> Container:
    c = _ctr(parent)
    source = ctx.load(args["source"], "File").value
    assert isinstance(source, File)

    def change(d: Directory, rel: str) -> Directory:
        return with_file(d, rel, source, args["permissions"], args["owner"])

    return write_at(c, _path(c, args), change)


@builds("Container", "withDirectory")
async def container_with_directory(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Container:
    c = _ctr(parent)
    source = ctx.load(args["source"], "Directory").value
    assert isinstance(source, Directory)

    def change(d: Directory, rel: str) -> Directory:
        return with_directory(
            d,
            rel,
            source,
            include=args["include"] or (),
            exclude=args["exclude"] or (),
            gitignore=bool(args["gitignore"]),
            owner=args["owner"],
            mode=args["permissions"],
        )

    return write_at(c, _path(c, args), change)


@builds("Container", "file")
async def container_file(ctx: RequestContext, parent: Handle | None, args: Args) -> File:
    c = _ctr(parent)
    return file_at(c, _path(c, args))


@builds("Container", "directory")
async def container_directory(ctx: RequestContext, parent: Handle | None, args: Args) -> Directory:
    c = _ctr(parent)
    return directory_at(c, _path(c, args))


@builds("Container", "rootfs")
async def container_rootfs(ctx: RequestContext, parent: Handle | None, args: Args) -> Directory:
    return (_ctr(parent)).rootfs


@builds("Container", "withRootfs")
async def container_with_rootfs(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Container:
    c = _ctr(parent)
    rootfs = ctx.load(args["directory"], "Directory").value
    assert isinstance(rootfs, Directory)
    return attrs.evolve(c, rootfs=rootfs)


# --- the small objects of a container's configuration --------------------------------------------


def _attribute_leaf(type_name: str, field: str, attribute: str) -> None:
    async def resolve(ctx: RequestContext, parent: Handle | None, args: Args) -> object:
        assert parent is not None
        return getattr(parent.value, attribute)

    leaf(type_name, field, memo=False)(resolve)


for _type, _field, _attribute in (
    ("EnvVariable", "name", "name"),
    ("EnvVariable", "value", "value"),
    ("Label", "name", "name"),
    ("Label", "value", "value"),
    ("Port", "port", "port"),
    ("Port", "protocol", "protocol"),
    ("Port", "description", "description"),
    ("Port", "experimentalSkipHealthcheck", "experimental_skip_healthcheck"),
):
    _attribute_leaf(_type, _field, _attribute)
