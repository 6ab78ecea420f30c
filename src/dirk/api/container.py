"""`Container`: a root filesystem, mounts and an image configuration, built lazily.

`from` pins an image (a registry round-trip for its config, no layers); `withExec` adds an
`Exec` whose output 0 becomes the rootfs and whose other outputs become the new content of the
writable bind mounts, so the next exec sees what this one wrote. Only leaves (`stdout`,
`exitCode`, `sync`, file contents, ...) run anything.
"""

from __future__ import annotations

import platform as _platform
from collections.abc import Callable, Iterable, Sequence

import anyio
import attrs

from dirk.api.context import RequestContext
from dirk.api.directory import (
    SCRATCH,
    file_in,
    gitignore_unsupported,
    rebased,
    subdirectory,
    with_directory,
    with_file,
    with_new_file,
)
from dirk.api.ids import format_id, identity
from dirk.api.paths import container_path, expand, relative_to
from dirk.api.registry import Args, builds, leaf
from dirk.api.values import (
    CacheVolume,
    Container,
    Directory,
    EnvVariable,
    File,
    Handle,
    Label,
    Mount,
    Port,
    Redirect,
)
from dirk.errors import InvalidArgumentError, NotSupportedError
from dirk.solver.ops import Copy, Exec, ExecMount, ImagePull, Ref
from dirk.solver.solver import ExecOutcome
from dirk.workers.images.config import ResolvedImage
from dirk.workers.images.platform import Platform

#: The PATH an exec gets when the container sets none (Dagger and Docker use the same).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: Where a mount source with an owner is staged, inside a copy of the rootfs (so that user
#: and group names resolve in the container's own /etc/passwd).
OWNED_STAGING = "/.dirk/owned"


def default_platform() -> str:
    """The platform of the engine's host, e.g. "linux/amd64"."""
    return str(Platform("linux", _platform.machine().lower()).normalized())


# --- pure helpers on values ----------------------------------------------------------------------


def parse_env(entries: Iterable[str]) -> tuple[tuple[str, str], ...]:
    pairs: list[tuple[str, str]] = []
    for entry in entries:
        name, _, value = entry.partition("=")
        pairs = [p for p in pairs if p[0] != name]
        pairs.append((name, value))
    return tuple(pairs)


def set_pair(
    pairs: tuple[tuple[str, str], ...], name: str, value: str
) -> tuple[tuple[str, str], ...]:
    """`pairs` with `name` set to `value`: replaced in place, or appended."""
    if any(n == name for n, _ in pairs):
        return tuple((n, value if n == name else v) for n, v in pairs)
    return (*pairs, (name, value))


def merge_pairs(
    base: tuple[tuple[str, str], ...], overrides: Iterable[tuple[str, str]]
) -> tuple[tuple[str, str], ...]:
    for name, value in overrides:
        base = set_pair(base, name, value)
    return base


def exec_env(env: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    entries = tuple(f"{n}={v}" for n, v in env)
    if not any(n == "PATH" for n, _ in env):
        entries = (f"PATH={DEFAULT_PATH}", *entries)
    return entries


def command(c: Container, args: Sequence[str], use_entrypoint: bool) -> tuple[str, ...]:
    """The argv of an exec, as Dagger builds it: the default args when `args` is empty, the
    entrypoint in front when asked for."""
    argv = tuple(args) or c.default_args
    if use_entrypoint and c.entrypoint:
        argv = (*c.entrypoint, *argv)
    if not argv:
        raise InvalidArgumentError(
            "no command has been set: pass args to withExec, or use an image (or "
            "withEntrypoint/withDefaultArgs) that defines a default command"
        )
    return argv


def exec_mount(m: Mount) -> ExecMount:
    if m.kind == "directory":
        assert m.directory is not None
        return ExecMount(m.target, "bind", m.directory.ref, m.directory.subdir, m.readonly)
    if m.kind == "file":
        assert m.file is not None
        return ExecMount(m.target, "bind", m.file.ref, m.file.path, m.readonly)
    if m.kind == "cache":
        assert m.cache is not None
        seed = m.cache.source
        return ExecMount(
            m.target,
            "cache",
            seed.ref if seed is not None else None,
            seed.subdir if seed is not None else "/",
            cache_id=m.cache.key,
            sharing=m.sharing,
        )
    return ExecMount(m.target, "tmpfs", size=m.size)


def with_exec(
    c: Container,
    argv: Sequence[str],
    *,
    stdin: bytes | None = None,
    expect: str = "SUCCESS",
    insecure_root_capabilities: bool = False,
    redirects: Sequence[Redirect] = (),
) -> Container:
    """`c` after running `argv`: the rootfs and each writable bind mount become the exec's
    outputs."""
    mounts = tuple(exec_mount(m) for m in c.mounts)
    op = Exec(
        root=rebased(c.rootfs),
        args=tuple(argv),
        env=exec_env(c.env),
        cwd=c.workdir or "/",
        user=c.user,
        mounts=mounts,
        stdin=stdin,
        expect=expect,  # type: ignore[arg-type]
        insecure_root_capabilities=insecure_root_capabilities,
    )
    new_mounts: list[Mount] = []
    output = 1
    for m, em in zip(c.mounts, mounts, strict=True):
        if em.has_output:
            ref = Ref(op, output)
            output += 1
            if m.directory is not None:
                m = attrs.evolve(m, directory=Directory(ref, m.directory.subdir))
            elif m.file is not None:
                m = attrs.evolve(m, file=File(ref, m.file.path))
        new_mounts.append(m)
    return attrs.evolve(
        c,
        rootfs=Directory(Ref(op, 0), "/"),
        mounts=tuple(new_mounts),
        last_exec=op,
        redirects=tuple(redirects),
    )


def locate(c: Container, path: str) -> tuple[Mount | None, str]:
    """The innermost mount holding the absolute `path` and the path relative to it (or None
    and `path` for the rootfs)."""
    best: tuple[Mount, str] | None = None
    for m in c.mounts:
        rel = relative_to(m.target, path)
        if rel is not None and (best is None or len(m.target) > len(best[0].target)):
            best = (m, rel)
    return best if best is not None else (None, path)


def directory_at(c: Container, path: str) -> Directory:
    m, rel = locate(c, path)
    if m is None:
        return subdirectory(c.rootfs, path)
    if m.kind == "directory":
        assert m.directory is not None
        return subdirectory(m.directory, rel or ".")
    raise NotSupportedError(
        f"reading {path} is not supported by dirk yet: it is inside the {m.kind} mount at "
        f"{m.target}"
    )


def file_at(c: Container, path: str) -> File:
    m, rel = locate(c, path)
    if m is None:
        return file_in(c.rootfs, path)
    if m.kind == "directory":
        assert m.directory is not None
        return file_in(m.directory, rel)
    if m.kind == "file" and rel == "":
        assert m.file is not None
        return m.file
    raise NotSupportedError(
        f"reading {path} is not supported by dirk yet: it is inside the {m.kind} mount at "
        f"{m.target}"
    )


Change = Callable[[Directory, str], Directory]


def write_at(c: Container, path: str, change: Change) -> Container:
    """`c` with `change(directory, relative path)` applied where `path` lives: the rootfs or a
    mounted directory."""
    m, rel = locate(c, path)
    if m is None:
        return attrs.evolve(c, rootfs=change(c.rootfs, path))
    if m.kind == "directory":
        assert m.directory is not None
        changed = attrs.evolve(m, directory=change(m.directory, rel or "."))
        return attrs.evolve(c, mounts=tuple(changed if x is m else x for x in c.mounts))
    raise NotSupportedError(
        f"writing {path} is not supported by dirk yet: it is inside the {m.kind} mount at "
        f"{m.target}"
    )


def with_mount(c: Container, mount: Mount) -> Container:
    """`c` with `mount` replacing any mount at the same target."""
    return attrs.evolve(c, mounts=(*(m for m in c.mounts if m.target != mount.target), mount))


def owned(c: Container, source: Directory, owner: str) -> Directory:
    """`source` with every entry owned by `owner`, resolved in the container's /etc/passwd."""
    if not owner:
        return source
    op = Copy(rebased(c.rootfs), OWNED_STAGING, source.ref, source.subdir, owner=owner)
    return Directory(Ref(op), OWNED_STAGING)


def owned_file(c: Container, source: File, owner: str) -> File:
    if not owner:
        return source
    target = OWNED_STAGING + "/" + source.path.rsplit("/", 1)[-1]
    op = Copy(rebased(c.rootfs), target, source.ref, source.path, owner=owner)
    return File(Ref(op), target)


def parse_port(text: str) -> Port:
    number, _, proto = text.partition("/")
    if not number.isdigit():
        raise InvalidArgumentError(f"the image declares an invalid port {text!r}")
    return Port(int(number), "UDP" if proto.lower() == "udp" else "TCP")


# --- resolution helpers --------------------------------------------------------------------------


def _ctr(parent: Handle | None) -> Container:
    assert parent is not None and isinstance(parent.value, Container)
    return parent.value


async def settle(ctx: RequestContext, c: Container) -> Container:
    """`c` with the output of its last exec written to the files it was redirected to.

    The exec runs here (once: the solver memoises it), because the file operations that
    write those files need its output.
    """
    if not c.redirects:
        return c
    assert c.last_exec is not None
    outcome = await exec_outcome(ctx, c.last_exec)
    settled = attrs.evolve(c, redirects=())
    for redirect in c.redirects:
        data = outcome.stdout if redirect.stream == "stdout" else outcome.stderr

        def write(d: Directory, rel: str, data: bytes = data) -> Directory:
            return with_new_file(d, rel, data)

        settled = write_at(settled, redirect.path, write)
    return settled


async def _settled(ctx: RequestContext, parent: Handle | None) -> Container:
    return await settle(ctx, _ctr(parent))


async def exec_outcome(ctx: RequestContext, op: Exec) -> ExecOutcome:
    result = await ctx.solver.result(op)
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
    c = await _settled(ctx, parent)
    address: str = args["address"]
    table = ctx.table

    async def resolve() -> ResolvedImage:
        return await ctx.solver.resolve_image(address, c.platform)

    resolved = await table.once(table.images, (address, c.platform), resolve)
    config = resolved.config
    pull = ImagePull(address, resolved.manifest_digest, c.platform)
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
        last_exec=None,
    )


@builds("Container", "withExec")
async def container_with_exec(ctx: RequestContext, parent: Handle | None, args: Args) -> Container:
    if args["experimentalPrivilegedNesting"]:
        raise NotSupportedError(
            "withExec(experimentalPrivilegedNesting: true) is not supported by dirk yet"
        )
    if args["redirectStdin"]:
        raise NotSupportedError(
            "withExec(redirectStdin:) is not supported by dirk yet: pass the text as stdin"
        )
    c = await _settled(ctx, parent)
    argv: list[str] = list(args["args"])
    if args["expand"]:
        env = dict(c.env)
        argv = [expand(a, env) for a in argv]
    redirects = [
        Redirect(container_path(c.workdir, args[key]), stream)
        for key, stream in (("redirectStdout", "stdout"), ("redirectStderr", "stderr"))
        if args[key]
    ]
    return with_exec(
        c,
        command(c, argv, bool(args["useEntrypoint"])),
        stdin=args["stdin"].encode() if args["stdin"] else None,
        expect=args["expect"],
        insecure_root_capabilities=bool(args["insecureRootCapabilities"]),
        redirects=redirects,  # type: ignore[arg-type]
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
    c = await _settled(ctx, parent)
    refs = [c.rootfs.ref]
    for m in c.mounts:
        source = m.directory.ref if m.directory else m.file.ref if m.file else None
        if source is not None:
            refs.append(source)
    async with anyio.create_task_group() as tg:
        for ref in dict.fromkeys(refs):
            tg.start_soon(ctx.solver.solve, ref)
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
    return attrs.evolve(c, env=set_pair(c.env, args["name"], value))


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


def _items(
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
    return _items(ctx, parent, "envVariables", "EnvVariable", env)


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
async def container_entrypoint(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> list[str]:
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
    return _items(ctx, parent, "labels", "Label", labels)


@leaf("Container", "exposedPorts")
async def container_exposed_ports(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> list[Handle]:
    assert parent is not None
    ports = [parse_port(p) for p in _ctr(parent).exposed_ports]
    return _items(ctx, parent, "exposedPorts", "Port", ports)


@builds("Container", "withSecretVariable")
async def container_with_secret_variable(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Container:
    raise NotSupportedError(
        "Container.withSecretVariable is not supported by dirk yet: secrets cannot reach a "
        "container's environment"
    )


# --- mounts ------------------------------------------------------------------------------------


@builds("Container", "withMountedDirectory")
async def container_with_mounted_directory(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Container:
    c = await _settled(ctx, parent)
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
    c = await _settled(ctx, parent)
    source = ctx.load(args["source"], "File").value
    assert isinstance(source, File)
    return with_mount(c, Mount(_path(c, args), "file", file=owned_file(c, source, args["owner"])))


@builds("Container", "withMountedCache")
async def container_with_mounted_cache(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Container:
    c = await _settled(ctx, parent)
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
    c = await _settled(ctx, parent)
    size = args.get("size") or 0
    if size < 0:
        raise InvalidArgumentError(f"withMountedTemp: size must not be negative, got {size}")
    return with_mount(c, Mount(_path(c, args), "tmpfs", size=size))


# --- files -------------------------------------------------------------------------------------


@builds("Container", "withNewFile")
async def container_with_new_file(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Container:
    c = await _settled(ctx, parent)
    contents: bytes = args["contents"].encode()

    def change(d: Directory, rel: str) -> Directory:
        return with_new_file(d, rel, contents, args["permissions"], args["owner"])

    return write_at(c, _path(c, args), change)


@builds("Container", "withFile")
async def container_with_file(ctx: RequestContext, parent: Handle | None, args: Args) -> Container:
    c = await _settled(ctx, parent)
    source = ctx.load(args["source"], "File").value
    assert isinstance(source, File)

    def change(d: Directory, rel: str) -> Directory:
        return with_file(d, rel, source, args["permissions"], args["owner"])

    return write_at(c, _path(c, args), change)


@builds("Container", "withDirectory")
async def container_with_directory(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Container:
    gitignore_unsupported(args)
    c = await _settled(ctx, parent)
    source = ctx.load(args["source"], "Directory").value
    assert isinstance(source, Directory)

    def change(d: Directory, rel: str) -> Directory:
        return with_directory(
            d,
            rel,
            source,
            include=args["include"] or (),
            exclude=args["exclude"] or (),
            owner=args["owner"],
            mode=args["permissions"],
        )

    return write_at(c, _path(c, args), change)


@builds("Container", "file")
async def container_file(ctx: RequestContext, parent: Handle | None, args: Args) -> File:
    c = await _settled(ctx, parent)
    return file_at(c, _path(c, args))


@builds("Container", "directory")
async def container_directory(ctx: RequestContext, parent: Handle | None, args: Args) -> Directory:
    c = await _settled(ctx, parent)
    return directory_at(c, _path(c, args))


@builds("Container", "rootfs")
async def container_rootfs(ctx: RequestContext, parent: Handle | None, args: Args) -> Directory:
    return (await _settled(ctx, parent)).rootfs


@builds("Container", "withRootfs")
async def container_with_rootfs(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Container:
    c = await _settled(ctx, parent)
    rootfs = ctx.load(args["directory"], "Directory").value
    assert isinstance(rootfs, Directory)
    return attrs.evolve(c, rootfs=rootfs)
