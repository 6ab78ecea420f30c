"""How an exec's container is set up: its root mounted read-write, each mount as asked, its
secrets fetched, its spec. An exec step (`handlers.exec`) and a service (`solver.services`)
start their containers the same way; the caller's exit stack undoes every mount."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import anyio.to_thread
import attrs

from dirk.errors import NestingError, SnapshotPathError
from dirk.solver.exec_secrets import ExecSecrets, exec_secrets, with_session_access
from dirk.solver.job import SessionAccess
from dirk.solver.mounts import StepMounts
from dirk.solver.ops import Exec, ExecMount, Ref
from dirk.solver.owners import resolve_owner
from dirk.solver.sources import socket_mount
from dirk.workers.executor.socket_relay import relayed_socket
from dirk.workers.executor.spec import BindMount, ContainerSpec, TmpfsMount
from dirk.workers.snapshots import fileops
from dirk.workers.snapshots.layers import Snapshot
from dirk.workers.snapshots.snapshotter import ActiveMount

if TYPE_CHECKING:
    from dirk.solver.handlers.base import Workers
    from dirk.solver.services import Endpoint


@attrs.frozen(eq=False)
class PreparedExec:
    """An exec's container, ready to run: its root mounted read-write, its spec, its writable
    bind mounts (each a step output) and its secrets."""

    root: ActiveMount
    spec: ContainerSpec
    writable: tuple[ActiveMount, ...]
    secrets: ExecSecrets


async def prepare_exec(
    workers: Workers,
    stack: AsyncExitStack,
    mounts_of_step: StepMounts,
    op: Exec,
    inputs: Mapping[Ref, Snapshot],
    secret: Callable[[str], bytes],
    *,
    hostname: str,
    endpoints: Sequence[Endpoint] = (),
    session_access: SessionAccess | None = None,
) -> PreparedExec:
    """Mount what `op` needs (undone by `stack`) and say how to run it; an exec step and a
    service (`solver.services`) start their containers the same way. `endpoints` are the
    services it is bound to: their names go into /etc/hosts, their ports become its peers.
    `session_access` is the session a nested command (`op.nesting`) reaches the engine as."""
    forwards: tuple[tuple[int, int], ...] = ()
    if op.nesting:
        access = _nesting_access(op, session_access)
        forwards = ((access.port, access.port),)
    root = await mounts_of_step.read_write(inputs[op.root])
    mounts: list[BindMount | TmpfsMount] = []
    writable: list[ActiveMount] = []
    for mount in op.mounts:
        if mount.kind == "secret":  # a file the executor makes on a tmpfs
            continue
        if mount.kind == "socket" and mount.owner:
            mounts.append(await _relayed_socket(workers, stack, mount, root.merged))
            continue
        mounts.append(await _prepare_mount(workers, mounts_of_step, stack, mount, inputs, writable))
    secrets = exec_secrets(op, root.merged, secret)
    if op.nesting:
        secrets = with_session_access(secrets, _nesting_access(op, session_access))
    stdin = op.stdin
    if op.redirect_stdin:
        stdin = await anyio.to_thread.run_sync(_read_stdin, root.merged, op.redirect_stdin)
    spec = ContainerSpec(
        args=op.args,
        env=(*op.env, *(f"{name}={value}" for name, value in op.volatile_env)),
        cwd=op.cwd,
        user=op.user,
        hostname=hostname,
        mounts=tuple(mounts),
        stdin=stdin,
        network=op.network,
        privileged=op.insecure_root_capabilities,
        secret_env=secrets.env,
        secret_files=secrets.files,
        extra_hosts=tuple(pair for e in endpoints for pair in e.hosts()),
        peers=tuple(e.veth for e in endpoints),
        loopback_forwards=forwards,
    )
    return PreparedExec(root, spec, tuple(writable), secrets)


def _nesting_access(op: Exec, access: SessionAccess | None) -> SessionAccess:
    if not op.network:
        raise NestingError(
            f"{op.describe()}: experimentalPrivilegedNesting needs the command's network "
            "(the engine is reached on its loopback); drop one of the two"
        )
    if access is None:
        raise NestingError(
            f"{op.describe()}: experimentalPrivilegedNesting needs an engine serving a TCP "
            "port (a `dirk engine` daemon); this session's engine serves none (in-process)"
        )
    return access


async def _prepare_mount(
    workers: Workers,
    step_mounts: StepMounts,
    stack: AsyncExitStack,
    mount: ExecMount,
    inputs: Mapping[Ref, Snapshot],
    writable: list[ActiveMount],
) -> BindMount | TmpfsMount:
    if mount.kind == "socket":
        return socket_mount(mount)
    if mount.kind == "tmpfs":
        return TmpfsMount(mount.target, mount.size)
    if mount.kind == "cache":
        seed = None
        if mount.source is not None:
            seed = _seeder(workers, inputs[mount.source], mount.source_path)
        path = await stack.enter_async_context(
            workers.volumes.acquire(mount.cache_id, mount.sharing, seed)
        )
        return BindMount(path, mount.target, readonly=False)
    assert mount.source is not None, "a bind mount needs a source"
    snapshot = inputs[mount.source]
    if mount.readonly:
        view = await step_mounts.read_only(snapshot)
        source = fileops.resolve_in_root(view, mount.source_path)
        return BindMount(source, mount.target, readonly=True)
    active = await step_mounts.read_write(snapshot)
    writable.append(active)
    source = fileops.resolve_in_root(active.merged, mount.source_path)
    return BindMount(source, mount.target, readonly=False)


async def _relayed_socket(
    workers: Workers, stack: AsyncExitStack, mount: ExecMount, root: Path
) -> BindMount:
    """A host socket under the owner the step asked for, resolved in its root filesystem:
    a socket of the engine's, relayed to the host's for as long as the step runs."""
    checked = socket_mount(mount)  # still there, still a socket
    uid, gid = resolve_owner(root, mount.owner)
    path = await stack.enter_async_context(
        relayed_socket(checked.source, uid, gid, workers.layers.layout.tmp)
    )
    return BindMount(path, mount.target, readonly=False)


def _seeder(workers: Workers, snapshot: Snapshot, source_path: str) -> Callable[[Path], None]:
    snap = workers.snapshotter

    def seed(target: Path) -> None:
        with snap.mount_ro(snapshot) as view:
            fileops.copy_into(view, source_path, target, "/")

    return seed


def _read_stdin(root: Path, path: str) -> bytes:
    """The content of `path` in the step's root (symlinks followed inside it), for stdin."""
    target = fileops.resolve_in_root(root, path)
    try:
        return target.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        raise SnapshotPathError(
            f"{path}: no such file or directory (withExec(redirectStdin:) names a file in the "
            "container; create it in an earlier step)"
        ) from None
    except IsADirectoryError:
        raise SnapshotPathError(f"{path} is a directory, not a file to read stdin from") from None
