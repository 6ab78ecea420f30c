"""HostDirectory and HostFile: a path of the engine's host, copied in.

The key covers the content (file names, modes, contents, link targets under the include and
exclude patterns), never the path or mtimes: the API layer usually hashed it at call time
(`digest`), else it is hashed now, and such a key is volatile (remembered for one solve only).
Running it copies the path into a new layer and checks the copy against the key, so a file
edited in between is never cached under the old content's key.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import anyio.to_thread
import attrs

from dirk.errors import HostPathError
from dirk.solver.handlers.base import Handler, Key, Step
from dirk.solver.keys import cache_key
from dirk.solver.ops import HostDirectory, HostFile
from dirk.solver.results import OpResult
from dirk.workers.hostaccess import HostAccess, HostUser, engine_credentials
from dirk.workers.snapshots.hostdir import digest_host_path, import_host_path
from dirk.workers.snapshots.layers import Snapshot


def _access(op: HostDirectory | HostFile) -> HostAccess:
    """The host is read with the rights of the session that asked (`op.owner`): its digest
    and its copy both, so a cache entry never answers someone who could not read it."""
    return HostAccess.for_user(op.owner or HostUser.engine())


async def _host_key(op: HostDirectory | HostFile, input_keys: Sequence[str]) -> Key:
    """The key of the content digest the API computed, or of one computed now (volatile)."""
    if op.digest:
        return Key(cache_key(op, input_keys))
    include = op.include if isinstance(op, HostDirectory) else ()
    exclude = op.exclude if isinstance(op, HostDirectory) else ()
    gitignore = op.gitignore if isinstance(op, HostDirectory) else False
    digest = await _access(op).run(
        lambda: digest_host_path(Path(op.path), include, exclude, gitignore)
    )
    return Key(cache_key(attrs.evolve(op, digest=digest), input_keys), volatile=True)


def _check_copy(op: HostDirectory | HostFile, copied: Path, key: str) -> None:
    with engine_credentials():  # the copy is a layer: the engine's
        digest = digest_host_path(copied)
    if cache_key(attrs.evolve(op, digest=digest), []) != key:
        raise HostPathError(
            f"host path {op.path} changed while the engine was copying it; "
            "run the pipeline again once nothing is writing to it"
        )


class HostDirectoryHandler(Handler[HostDirectory]):
    fields_after_run = True

    async def key(self, op: HostDirectory, input_keys: Sequence[str]) -> Key:
        return await _host_key(op, input_keys)

    async def run(self, op: HostDirectory, step: Step) -> OpResult:
        def copy() -> Snapshot:
            layers = self.workers.layers
            snapshot = import_host_path(Path(op.path), layers, op.include, op.exclude, op.gitignore)
            _check_copy(op, layers.path(snapshot.layers[0]), step.key)
            return snapshot

        return OpResult(step.key, (await _access(op).run(copy),))

    async def explain_fields(self, op: HostDirectory, result: OpResult) -> Mapping[str, str]:
        """The copied files by path, so a rerun can say which file changed."""
        layer = self.workers.layers.path(result.outputs[0].layers[0])
        return await anyio.to_thread.run_sync(_file_digests, layer)


#: A host directory with more files than this is explained by its digest alone.
EXPLAINED_FILES = 20_000


def _file_digests(root: Path) -> dict[str, str]:
    """`file <path>` -> content digest (or link target) of everything below `root`."""
    fields: dict[str, str] = {}
    for directory, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = Path(directory, name)
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                fields[f"file {rel}"] = "-> " + os.readlink(path)
            else:
                with path.open("rb") as f:
                    fields[f"file {rel}"] = "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()
            if len(fields) > EXPLAINED_FILES:
                return {}
    return fields


class HostFileHandler(Handler[HostFile]):
    async def key(self, op: HostFile, input_keys: Sequence[str]) -> Key:
        return await _host_key(op, input_keys)

    async def run(self, op: HostFile, step: Step) -> OpResult:
        def copy() -> Snapshot:
            path = Path(op.path)
            layers = self.workers.layers
            snapshot = import_host_path(path, layers)
            _check_copy(op, layers.path(snapshot.layers[0]) / path.name, step.key)
            return snapshot

        return OpResult(step.key, (await _access(op).run(copy),))
