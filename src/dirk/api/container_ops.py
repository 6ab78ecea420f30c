"""How container calls become operations: pure functions from `Container` values (and their
arguments) to new values. Nothing here runs or resolves anything."""

from __future__ import annotations

import platform as _platform
from collections.abc import Callable, Iterable, Sequence

import attrs

from dirk.api.directory import file_in, rebased, subdirectory
from dirk.api.paths import relative_to
from dirk.api.values import Container, Directory, File, HealthcheckConfig, Mount, Port
from dirk.errors import InvalidArgumentError
from dirk.solver.ops import Copy, Exec, ExecMount, Ref
from dirk.workers.images.config import ImageHealthcheck
from dirk.workers.images.platform import Platform

#: The PATH an exec gets when the container sets none (Dagger and Docker use the same).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: Where a mount source with an owner is staged, inside a copy of the rootfs (so that user
#: and group names resolve in the container's own /etc/passwd).
OWNED_STAGING = "/.dirk/owned"


def default_platform() -> str:
    """The platform of the engine's host, e.g. "linux/amd64"."""
    return str(Platform("linux", _platform.machine().lower()).normalized())


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
    if m.kind == "secret":
        assert m.secret is not None
        return ExecMount(m.target, "secret", secret=m.secret, owner=m.owner, mode=m.mode)
    if m.kind == "socket":
        assert m.socket is not None
        return ExecMount(m.target, "socket", host_path=m.socket.path, owner=m.owner)
    return ExecMount(m.target, "tmpfs", size=m.size)


def with_exec(
    c: Container,
    argv: Sequence[str],
    *,
    stdin: bytes | None = None,
    expect: str = "SUCCESS",
    insecure_root_capabilities: bool = False,
    redirect_stdin: str = "",
    redirect_stdout: str = "",
    redirect_stderr: str = "",
    network: bool = True,
    nesting: bool = False,
) -> Container:
    """`c` after running `argv`: the rootfs and each writable bind mount become the exec's
    outputs."""
    mounts = tuple(exec_mount(m) for m in c.mounts)
    volatile = {name for name, _ in c.volatile_env}
    op = Exec(
        root=rebased(c.rootfs),
        args=tuple(argv),
        env=exec_env(tuple(p for p in c.env if p[0] not in volatile)),
        volatile_env=c.volatile_env,
        cwd=c.workdir or "/",
        user=c.user,
        mounts=mounts,
        stdin=stdin,
        expect=expect,  # type: ignore[arg-type]
        insecure_root_capabilities=insecure_root_capabilities,
        redirect_stdin=redirect_stdin,
        redirect_stdout=redirect_stdout,
        redirect_stderr=redirect_stderr,
        network=network,
        secret_env=c.secret_env,
        debug_shell=c.default_terminal_cmd.args if c.default_terminal_cmd else (),
        nesting=nesting,
        services=c.services,
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
    raise _outside_snapshots(path, m, "read")


def _outside_snapshots(path: str, m: Mount, verb: str) -> InvalidArgumentError:
    """As in Dagger: a cache volume or tmpfs belongs to no snapshot, so no path in it can be
    read as a Directory or File, or written by a `with*` call (a command can)."""
    if m.kind in ("cache", "tmpfs"):
        volume = "cache volume" if m.kind == "cache" else "tmpfs"
        return InvalidArgumentError(
            f"cannot {verb} {path}: it is inside the {volume} mounted at {m.target}, which "
            "belongs to no snapshot; copy it elsewhere with withExec first, or use a path "
            "outside the mount"
        )
    return InvalidArgumentError(
        f"cannot {verb} {path}: it is below the file mounted at {m.target}, which is no directory"
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
    raise _outside_snapshots(path, m, "read")


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
    if m.kind == "file" and rel == "":
        # Writing over a mounted file: the mount's source file is replaced.
        assert m.file is not None
        source = change(Directory(m.file.ref, "/"), m.file.path)
        changed = attrs.evolve(m, file=File(source.ref, m.file.path))
        return attrs.evolve(c, mounts=tuple(changed if x is m else x for x in c.mounts))
    raise _outside_snapshots(path, m, "write")


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


def port_key(port: int, protocol: str) -> str:
    """How an image config names a port: "80/tcp"."""
    return f"{port}/{protocol.lower()}"


def exposed_ports(c: Container) -> list[Port]:
    """The container's ports in order, with what `withExposedPort` said of each."""
    details = {port_key(p.port, p.protocol): p for p in c.port_details}
    ports = []
    for text in c.exposed_ports:
        port = parse_port(text)
        ports.append(details.get(port_key(port.port, port.protocol), port))
    return ports


def go_duration(ns: int) -> str:
    """Nanoseconds the way Go's time.Duration prints them ("1m30s", "500ms"); "" for 0."""
    if ns <= 0:
        return ""
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return _trim(ns / size) + unit
    hours, rest = divmod(ns, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    text = f"{hours}h" if hours else ""
    if hours or minutes:
        text += f"{minutes}m"
    return text + _trim(rest / 1_000_000_000) + "s"


def _trim(value: float) -> str:
    return f"{value:.9f}".rstrip("0").rstrip(".")


def image_healthcheck(h: ImageHealthcheck | None) -> HealthcheckConfig | None:
    """An image config's healthcheck as Dagger shows it (CMD-SHELL means `shell`)."""
    if h is None:
        return None
    kind, rest = h.test[0], h.test[1:]
    args = rest if kind in ("CMD", "CMD-SHELL") else h.test
    return HealthcheckConfig(
        args=args,
        shell=kind == "CMD-SHELL",
        interval=go_duration(h.interval_ns),
        timeout=go_duration(h.timeout_ns),
        start_period=go_duration(h.start_period_ns),
        start_interval=go_duration(h.start_interval_ns),
        retries=h.retries,
    )
