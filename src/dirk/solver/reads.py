"""Reads of solved snapshots that need a whole tree (glob, search, digests) and the exports to
the client's host, plus the host look-ups the API makes before building operations.

Each read solves the snapshot, mounts it read-only in a worker thread and hands a real
directory to the workers (`snapshots.search`, `snapshots.hostexport`); the host side goes
through `snapshots.hostdir`/`hostexport` only.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import anyio.to_thread

from dirk.errors import SnapshotPathError
from dirk.solver.job import Job
from dirk.solver.ops import Ref
from dirk.workers.hostaccess import HostAccess, engine_credentials, entered_as_engine
from dirk.workers.snapshots import hostdir, hostexport, search
from dirk.workers.snapshots.fileops import resolve_parts
from dirk.workers.snapshots.paths import Parts
from dirk.workers.snapshots.search import SearchHit, SearchOptions

if TYPE_CHECKING:
    from dirk.solver.solver import Solver

T = TypeVar("T")


def missing(path: str) -> SnapshotPathError:
    """Dagger's words for a path that is not there, then dirk's hint."""
    return SnapshotPathError(
        f"{path}: no such file or directory (check the path: it is taken inside the directory "
        "or container it is asked of)"
    )


def _lookup(root: Path, path: str, kind: str) -> tuple[Parts, Path]:
    parts = resolve_parts(root, path)
    host = root.joinpath(*parts)
    try:
        st = os.lstat(host)
    except (FileNotFoundError, NotADirectoryError):
        raise missing(path) from None
    if kind == "dir" and not stat.S_ISDIR(st.st_mode):
        raise SnapshotPathError(f"{path} is not a directory")
    if kind == "file" and not stat.S_ISREG(st.st_mode):
        what = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise SnapshotPathError(f"{path} is {what}, not a file")
    return parts, host


async def _in_view(solver: Solver, job: Job, ref: Ref, work: Callable[[Path], T]) -> T:
    snapshot = await solver.solve(job, ref)
    snap = solver.snapshotter

    def run() -> T:
        with snap.mount_ro(snapshot) as root:
            return work(root)

    return await anyio.to_thread.run_sync(run)


async def _to_host(solver: Solver, job: Job, ref: Ref, work: Callable[[Path], T]) -> T:
    """Like `_in_view`, for a write to the host: in a thread with the job's owner's rights,
    the snapshot mounted (and looked up) with the engine's."""
    snapshot = await solver.solve(job, ref)
    snap = solver.snapshotter

    def run() -> T:
        with entered_as_engine(snap.mount_ro(snapshot)) as root:
            return work(root)

    return await job.host.run(run)


def _lookup_as_engine(root: Path, path: str, kind: str) -> Path:
    with engine_credentials():
        return _lookup(root, path, kind)[1]


async def glob(solver: Solver, job: Job, ref: Ref, subdir: str, pattern: str) -> list[str]:
    return await _in_view(
        solver, job, ref, lambda root: search.glob(_lookup(root, subdir, "dir")[1], pattern)
    )


async def search_tree(
    solver: Solver, job: Job, ref: Ref, subdir: str, paths: Sequence[str], opts: SearchOptions
) -> list[SearchHit]:
    """`opts` over the files below `paths` of the directory `subdir` ("." when none)."""

    def work(root: Path) -> list[SearchHit]:
        base_parts, _ = _lookup(root, subdir, "dir")
        base = root.joinpath(*base_parts)
        starts = []
        for path in paths or ["."]:
            parts = resolve_parts(base, path)
            if not os.path.lexists(base.joinpath(*parts)):
                raise missing(path)
            starts.append(parts)
        return search.search(base, starts, opts)

    return await _in_view(solver, job, ref, work)


async def search_file(
    solver: Solver, job: Job, ref: Ref, path: str, opts: SearchOptions
) -> list[SearchHit]:
    def work(root: Path) -> list[SearchHit]:
        parts, _ = _lookup(root, path, "file")
        return search.search(root.joinpath(*parts[:-1]), [parts[-1:]], opts)

    return await _in_view(solver, job, ref, work)


async def tree_digest(solver: Solver, job: Job, ref: Ref, subdir: str) -> str:
    return await _in_view(
        solver, job, ref, lambda root: search.tree_digest(_lookup(root, subdir, "dir")[1])
    )


async def file_digest(solver: Solver, job: Job, ref: Ref, path: str, *, metadata: bool) -> str:
    def work(root: Path) -> str:
        parts, host = _lookup(root, path, "file")
        return search.file_digest(host, parts[-1], metadata=metadata)

    return await _in_view(solver, job, ref, work)


async def export_directory(
    solver: Solver, job: Job, ref: Ref, subdir: str, dest: Path, *, wipe: bool
) -> Path:
    return await _to_host(
        solver,
        job,
        ref,
        lambda root: hostexport.export_directory(
            _lookup_as_engine(root, subdir, "dir"), dest, wipe=wipe
        ),
    )


async def export_changes(
    solver: Solver, job: Job, layer: Ref, removed: Sequence[str], dest: Path
) -> Path:
    """A Changeset's export: `removed` removed below `dest`, then the tree of added and
    modified files (`layer`) merged into it."""
    await job.host.run(hostexport.remove_entries, dest, removed)
    return await _to_host(
        solver, job, layer, lambda root: hostexport.export_directory(root, dest, wipe=False)
    )


async def export_file(
    solver: Solver, job: Job, ref: Ref, path: str, dest: Path, *, allow_parent_dir: bool
) -> Path:
    return await _to_host(
        solver,
        job,
        ref,
        lambda root: hostexport.export_file(
            _lookup_as_engine(root, path, "file"), dest, allow_parent_dir=allow_parent_dir
        ),
    )


async def host_kind(access: HostAccess, path: Path) -> hostdir.HostKind:
    return await access.run(hostdir.host_kind, path)


async def find_up(access: HostAccess, start: Path, name: str) -> Path | None:
    return await access.run(hostdir.find_up, start, name)
