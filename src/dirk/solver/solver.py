"""The solver: turns operations into snapshots, each at most once, concurrently where possible.

For every operation it computes a cache key (`keys.cache_key`), then in order: the in-memory
results of this engine, an identical operation already running (awaited, not repeated), the
persistent cache, and only then the work itself, after solving the inputs concurrently. Work
is bounded by a capacity limiter; results are stored only once every layer they name is
committed, so a crash at any point leaves a cache that is smaller, never wrong.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, Literal, NoReturn, TypeVar

import anyio
import anyio.to_thread
import attrs

from dirk.errors import (
    OUTPUT_TAIL_BYTES,
    DirkError,
    ExecError,
    HostPathError,
    SecretError,
    SolveError,
    StateError,
)
from dirk.solver.exec_secrets import exec_secrets
from dirk.solver.flights import Flights
from dirk.solver.images_out import ImagesOut
from dirk.solver.keys import cache_key
from dirk.solver.mounts import StepMounts
from dirk.solver.ops import (
    Copy,
    Exec,
    ExecMount,
    ExtractArchive,
    HostDirectory,
    HostFile,
    ImageImport,
    ImagePull,
    ImageTarball,
    MkDir,
    MkFile,
    Op,
    Ref,
    Remove,
    Scratch,
)
from dirk.solver.owners import resolve_owner
from dirk.solver.treeops import TREE_OPS, run_tree_op
from dirk.solver.volumes import CacheVolumes
from dirk.state.blobs import BlobStore
from dirk.state.db import Database
from dirk.workers.executor.executor import Executor
from dirk.workers.executor.spec import BindMount, ContainerSpec, TmpfsMount, combine
from dirk.workers.images.config import ResolvedImage
from dirk.workers.images.reference import ImageReference
from dirk.workers.images.store import ImageStore
from dirk.workers.snapshots import fileops
from dirk.workers.snapshots.archive import extract_archive
from dirk.workers.snapshots.hostdir import digest_host_path, import_host_path
from dirk.workers.snapshots.layers import LayerStore, Snapshot
from dirk.workers.snapshots.snapshotter import ActiveMount, FileInfo, Snapshotter

#: How many results of this engine's life stay in memory (each is small: layer ids + output).
MEMO_LIMIT = 20_000
#: Exec outputs up to this size are stored in the cache row itself, larger ones as blobs.
INLINE_OUTPUT_LIMIT = 64 * 1024

T = TypeVar("T")


@attrs.frozen
class ExecOutcome:
    exit_code: int
    stdout: bytes
    stderr: bytes
    #: Arrival order of the output: runs of (0 = stdout, 1 = stderr; byte count).
    order: tuple[tuple[int, int], ...] = ()

    @property
    def combined(self) -> bytes:
        """stdout and stderr interleaved as the command wrote them."""
        return combine(self.stdout, self.stderr, self.order)


@attrs.frozen
class OpResult:
    key: str
    outputs: tuple[Snapshot, ...]
    exec: ExecOutcome | None = None
    cached: bool = False


EventKind = Literal["start", "cached", "done", "error", "stdout", "stderr"]


@attrs.frozen
class StepEvent:
    """What the solver reports as it goes, for progress views and logs."""

    kind: EventKind
    key: str
    description: str
    data: bytes = b""
    duration: float = 0.0


EventSink = Callable[[StepEvent], None]


@attrs.define
class _Counters:
    """What the solver did, for tests and benchmarks: executed work vs cache hits."""

    executed: int = 0
    execs: int = 0
    cache_hits: int = 0
    memo_hits: int = 0
    joined: int = 0


class Solver:
    def __init__(
        self,
        *,
        db: Database,
        blobs: BlobStore,
        layers: LayerStore,
        snapshotter: Snapshotter,
        images: ImageStore,
        executor: Executor,
        volumes: CacheVolumes,
        max_parallel: int | None = None,
        secrets: Callable[[str], bytes] | None = None,
    ) -> None:
        self._db = db
        self._secrets = secrets or _no_secrets
        self._blobs = blobs
        self._layers = layers
        self._snap = snapshotter
        self._images = images
        self._executor = executor
        self._volumes = volumes
        self._limiter = anyio.CapacityLimiter(max_parallel or max(2, 2 * (os.cpu_count() or 1)))
        self._keys: dict[Op, str] = {}
        self._memo: dict[str, OpResult] = {}
        self._flights = Flights()
        self._resolved: dict[str, ResolvedImage] = {}
        self._sinks: list[EventSink] = []
        self.counters = _Counters()
        self.images_out = ImagesOut(
            solve_all=self.solve_all,
            db=db,
            blobs=blobs,
            layers=layers,
            snapshotter=snapshotter,
            images=images,
        )

    # --- public API -----------------------------------------------------------------------

    def subscribe(self, sink: EventSink) -> Callable[[], None]:
        """Receive every StepEvent; returns a function that unsubscribes."""
        self._sinks.append(sink)
        return lambda: self._sinks.remove(sink)

    async def key(self, op: Op) -> str:
        return (await self._key(op, {}))[0]

    async def result(self, op: Op) -> OpResult:
        """All outputs (and exec metadata) of `op`, computing only what is not cached."""
        return await self._result(op, {})

    async def solve(self, ref: Ref) -> Snapshot:
        return (await self.result(ref.op)).outputs[ref.output]

    async def solve_all(self, refs: Sequence[Ref]) -> list[Snapshot]:
        """Solve `refs` concurrently; the first failure is raised as itself (an `ExecError`
        stays an `ExecError`, not an exception group)."""
        results: dict[Ref, Snapshot] = {}

        async def solve_one(ref: Ref) -> None:
            results[ref] = await self.solve(ref)

        if len(refs) == 1:
            await solve_one(refs[0])
        else:
            try:
                async with anyio.create_task_group() as tg:
                    for ref in dict.fromkeys(refs):
                        tg.start_soon(solve_one, ref)
            except BaseExceptionGroup as group:
                _raise_first_error(group)
        return [results[ref] for ref in refs]

    async def resolve_image(self, reference: str, platform: str = "linux/amd64") -> ResolvedImage:
        """Ask the registry what `reference` is now (tag -> digest, config); pulls no layers."""
        resolved = await self._images.resolve(reference, platform)
        self._resolved[resolved.manifest_digest] = resolved
        return resolved

    async def read_file(self, ref: Ref, path: str, limit: int | None = None) -> bytes:
        snapshot = await self.solve(ref)
        return await anyio.to_thread.run_sync(self._snap.read_file, snapshot, path, limit)

    async def list_dir(self, ref: Ref, path: str) -> list[str]:
        snapshot = await self.solve(ref)
        return await anyio.to_thread.run_sync(self._snap.list_dir, snapshot, path)

    async def list_entries(self, ref: Ref, path: str) -> list[tuple[str, str]]:
        """(name, kind) of each entry in directory `path`; kind is file, dir, symlink or other."""
        snapshot = await self.solve(ref)
        entries = await anyio.to_thread.run_sync(self._snap.list_entries, snapshot, path)
        return [(name, str(kind)) for name, kind in entries]

    async def stat(self, ref: Ref, path: str, *, follow: bool = False) -> FileInfo | None:
        snapshot = await self.solve(ref)
        return await anyio.to_thread.run_sync(lambda: self._snap.stat(snapshot, path, follow))

    @property
    def snapshotter(self) -> Snapshotter:
        """For reads that need a mounted view (`solver.reads`)."""
        return self._snap

    # --- keys -----------------------------------------------------------------------------

    async def _key(self, op: Op, local: dict[Op, str]) -> tuple[str, bool]:
        """(key, volatile): volatile keys depend on host files read now, so they are only
        remembered for one call (`local`); the others for the engine's life."""
        known = self._keys.get(op)
        if known is not None:
            return known, False
        known = local.get(op)
        if known is not None:
            return known, True
        volatile = False
        input_keys = []
        for ref in op.inputs():
            k, v = await self._key(ref.op, local)
            input_keys.append(k)
            volatile = volatile or v
        keyed: Op = op
        if isinstance(op, HostDirectory | HostFile) and not op.digest:
            include = op.include if isinstance(op, HostDirectory) else ()
            exclude = op.exclude if isinstance(op, HostDirectory) else ()
            gitignore = op.gitignore if isinstance(op, HostDirectory) else False
            digest = await anyio.to_thread.run_sync(
                lambda: digest_host_path(Path(op.path), include, exclude, gitignore)
            )
            keyed = attrs.evolve(op, digest=digest)
            volatile = True
        key = cache_key(keyed, input_keys)
        if volatile:
            local[op] = key
        else:
            if len(self._keys) >= MEMO_LIMIT:
                # Oldest first: keys hold operations (and inline file contents) alive.
                self._keys.pop(next(iter(self._keys)))
            self._keys[op] = key
        return key, volatile

    # --- results --------------------------------------------------------------------------

    async def _result(self, op: Op, local: dict[Op, str]) -> OpResult:
        key, _ = await self._key(op, local)
        memo = self._memo.get(key)
        if memo is not None:
            self.counters.memo_hits += 1
            return memo
        if self._flights.running(key):
            self.counters.joined += 1

        async def run() -> OpResult:
            result = await _in_child_task(lambda: self._load_or_compute(op, key, local))
            self._remember(key, result)
            return result

        return await self._flights.run(key, run)

    def _remember(self, key: str, result: OpResult) -> None:
        """Keep a result in memory, unless its output is large (a blob file has it)."""
        if _has_blob_output(result):
            return
        if len(self._memo) >= MEMO_LIMIT:
            self._memo.pop(next(iter(self._memo)))
        self._memo[key] = result

    async def _load_or_compute(self, op: Op, key: str, local: dict[Op, str]) -> OpResult:
        description = op.describe()
        loaded = await self._load(key)
        if loaded is not None:
            self.counters.cache_hits += 1
            self._emit(StepEvent("cached", key, description))
            return loaded
        inputs = await self._solve_inputs(op, local)
        started = time.monotonic()
        self._emit(StepEvent("start", key, description))
        try:
            async with self._limiter:
                result = await self._compute(op, key, inputs)
        except BaseException as exc:
            self._emit(StepEvent("error", key, description, str(exc).encode()))
            if isinstance(exc, Exception) and not isinstance(exc, DirkError):
                raise SolveError(description, exc) from exc
            raise
        self.counters.executed += 1
        with anyio.CancelScope(shield=True):  # done work is worth keeping
            await self._store(key, result)
        self._emit(StepEvent("done", key, description, duration=time.monotonic() - started))
        return result

    async def _solve_inputs(self, op: Op, local: dict[Op, str]) -> dict[Ref, Snapshot]:
        refs = op.inputs()
        ops = list(dict.fromkeys(ref.op for ref in refs))
        results: dict[Op, OpResult] = {}
        if len(ops) == 1:
            results[ops[0]] = await self._result(ops[0], local)
        elif ops:

            async def solve_one(input_op: Op) -> None:
                results[input_op] = await self._result(input_op, local)

            try:
                async with anyio.create_task_group() as tg:
                    for input_op in ops:
                        tg.start_soon(solve_one, input_op)
            except BaseExceptionGroup as group:
                _raise_first_error(group)
        return {ref: results[ref.op].outputs[ref.output] for ref in refs}

    async def _compute(self, op: Op, key: str, inputs: dict[Ref, Snapshot]) -> OpResult:
        if isinstance(op, Scratch):
            return OpResult(key, (Snapshot(),))
        if isinstance(op, ImagePull):
            resolved = self._resolved.get(op.digest)
            if resolved is None:
                pinned = ImageReference.parse(op.reference).with_digest(op.digest)
                resolved = await self.resolve_image(str(pinned), op.platform)
            return OpResult(key, (await self._images.unpack(resolved),))
        if isinstance(op, HostDirectory | HostFile):
            snapshot = await anyio.to_thread.run_sync(self._import_host, op, key)
            return OpResult(key, (snapshot,))
        if isinstance(op, Exec):
            return await self._exec(op, key, inputs)
        if isinstance(op, ImageTarball):
            snapshots = [inputs[i.rootfs] for i in op.images]
            out = self.images_out
            tarball = await out.tarball(op.images, op.compression, op.media_types, snapshots)
            return OpResult(key, (tarball,))
        if isinstance(op, ImageImport):
            rootfs = await self.images_out.unpack_import(op, inputs[op.source])
            return OpResult(key, (rootfs,))
        if isinstance(op, TREE_OPS):
            scratch = self._layers.layout.tmp
            snapshot = await anyio.to_thread.run_sync(run_tree_op, self._snap, op, inputs, scratch)
            return OpResult(key, (snapshot,))
        assert isinstance(op, MkFile | MkDir | Remove | Copy | ExtractArchive)
        snapshot = await anyio.to_thread.run_sync(self._file_op, op, inputs)
        return OpResult(key, (snapshot,))

    def _import_host(self, op: HostDirectory | HostFile, key: str) -> Snapshot:
        """Copy a host path into a layer, then check the copy is what the key was made from:
        a file edited between hashing and copying must not be cached under the old key."""
        path = Path(op.path)
        if isinstance(op, HostDirectory):
            snapshot = import_host_path(path, self._layers, op.include, op.exclude, op.gitignore)
            copied = self._layers.path(snapshot.layers[0])
        else:
            snapshot = import_host_path(path, self._layers)
            copied = self._layers.path(snapshot.layers[0]) / path.name
        if cache_key(attrs.evolve(op, digest=digest_host_path(copied)), []) != key:
            raise HostPathError(
                f"host path {op.path} changed while the engine was copying it; "
                "run the pipeline again once nothing is writing to it"
            )
        return snapshot

    # --- file operations ------------------------------------------------------------------

    def _file_op(
        self, op: MkFile | MkDir | Remove | Copy | ExtractArchive, inputs: dict[Ref, Snapshot]
    ) -> Snapshot:
        active = self._snap.mount_rw(inputs[op.base])
        try:
            root = active.merged
            if isinstance(op, MkFile):
                fileops.write_file(root, op.path, op.contents, op.mode, op.uid, op.gid)
            elif isinstance(op, MkDir):
                fileops.make_dir(root, op.path, op.mode)
            elif isinstance(op, Remove):
                fileops.remove(root, op.path, op.allow_missing)
            elif isinstance(op, ExtractArchive):
                with self._snap.mount_ro(inputs[op.source]) as source_root:
                    archive = fileops.resolve_in_root(source_root, op.source_path)
                    extract_archive(archive, root, op.dest_path)
            else:
                owner = resolve_owner(root, op.owner) if op.owner else None
                with self._snap.mount_ro(inputs[op.source]) as source_root:
                    fileops.copy_into(
                        source_root,
                        op.source_path,
                        root,
                        op.dest_path,
                        include=op.include,
                        exclude=op.exclude,
                        owner=owner,
                        mode=op.mode,
                        gitignore=op.gitignore,
                    )
        except BaseException:
            self._snap.release(active)
            raise
        return self._snap.commit(active)

    # --- exec -----------------------------------------------------------------------------

    async def _exec(self, op: Exec, key: str, inputs: dict[Ref, Snapshot]) -> OpResult:
        async with AsyncExitStack() as stack:
            step = StepMounts(self._snap, stack)
            root = await step.read_write(inputs[op.root])
            mounts: list[BindMount | TmpfsMount] = []
            writable: list[ActiveMount] = []
            for mount in op.mounts:
                if mount.kind == "secret":  # a file the executor makes on a tmpfs
                    continue
                mounts.append(await self._prepare_mount(step, stack, mount, inputs, writable))
            secrets = exec_secrets(op, root.merged, self._secrets)
            spec = ContainerSpec(
                args=op.args,
                env=(*op.env, *(f"{name}={value}" for name, value in op.volatile_env)),
                cwd=op.cwd,
                user=op.user,
                hostname=op.hostname or key.removeprefix("sha256:")[:12],
                mounts=tuple(mounts),
                stdin=op.stdin,
                network=op.network,
                privileged=op.insecure_root_capabilities,
                secret_env=secrets.env,
                secret_files=secrets.files,
            )

            def on_output(stream: Literal["stdout", "stderr"], chunk: bytes) -> None:
                self._emit(StepEvent(stream, key, op.describe(), chunk))

            self.counters.execs += 1
            if secrets.scrubber.active:
                # Scrubbed before anything sees the output: events, errors, files, the cache.
                output = secrets.scrubbed_output(on_output)
                process = await self._executor.run(root.merged, spec, output.on_output)
                stdout, stderr, order = output.finish()
                process = attrs.evolve(process, stdout=stdout, stderr=stderr, order=order)
            else:
                process = await self._executor.run(root.merged, spec, on_output)
            if not _exit_code_expected(op, process.exit_code):
                raise ExecError(
                    op.args,
                    process.exit_code,
                    _tail(process.stdout),
                    _tail(process.stderr),
                )
            for path, data in (
                (op.redirect_stdout, process.stdout),
                (op.redirect_stderr, process.stderr),
            ):
                if path:
                    await anyio.to_thread.run_sync(fileops.write_file, root.merged, path, data)
            outputs = [await step.commit(root, self._executor.stub_paths(spec))]
            for active in writable:
                outputs.append(await step.commit(active))
            outcome = ExecOutcome(process.exit_code, process.stdout, process.stderr, process.order)
            return OpResult(key, tuple(outputs), outcome)

    async def _prepare_mount(
        self,
        step: StepMounts,
        stack: AsyncExitStack,
        mount: ExecMount,
        inputs: dict[Ref, Snapshot],
        writable: list[ActiveMount],
    ) -> BindMount | TmpfsMount:
        if mount.kind == "tmpfs":
            return TmpfsMount(mount.target, mount.size)
        if mount.kind == "cache":
            seed = None
            if mount.source is not None:
                seed = self._seeder(inputs[mount.source], mount.source_path)
            path = await stack.enter_async_context(
                self._volumes.acquire(mount.cache_id, mount.sharing, seed)
            )
            return BindMount(path, mount.target, readonly=False)
        assert mount.source is not None, "a bind mount needs a source"
        snapshot = inputs[mount.source]
        if mount.readonly:
            view = await step.read_only(snapshot)
            source = fileops.resolve_in_root(view, mount.source_path)
            return BindMount(source, mount.target, readonly=True)
        active = await step.read_write(snapshot)
        writable.append(active)
        source = fileops.resolve_in_root(active.merged, mount.source_path)
        return BindMount(source, mount.target, readonly=False)

    def _seeder(self, snapshot: Snapshot, source_path: str) -> Callable[[Path], None]:
        def seed(target: Path) -> None:
            with self._snap.mount_ro(snapshot) as view:
                fileops.copy_into(view, source_path, target, "/")

        return seed

    # --- persistence ----------------------------------------------------------------------

    # SQLite reads and writes (indexed, no fsync in WAL mode) stay on the event loop: a thread
    # round trip per step costs more than they do. Blob files go through a thread.

    async def _load(self, key: str) -> OpResult | None:
        """The stored result of `key`, if every layer and blob it names is still there; a row
        naming something gone (or of another format) is dropped, so the work runs again."""
        try:
            stored = self._db.cache_get(key)
        except ValueError:  # not JSON
            self._db.cache_delete(key)
            return None
        if stored is None:
            return None
        if _names_blobs(stored):
            return await anyio.to_thread.run_sync(self._decode_or_drop, key, stored)
        return self._decode_or_drop(key, stored)

    def _decode_or_drop(self, key: str, stored: dict[str, Any]) -> OpResult | None:
        try:
            loaded = self._decode(key, stored)
        except (KeyError, TypeError, ValueError):
            loaded = None
        if loaded is None:
            self._db.cache_delete(key)
        return loaded

    async def _store(self, key: str, result: OpResult) -> None:
        """Written last, once every layer the result names is committed."""
        if _has_blob_output(result):
            encoded = await anyio.to_thread.run_sync(self._encode, result)
        else:
            encoded = self._encode(result)
        self._db.cache_put(key, encoded)

    def _encode(self, result: OpResult) -> dict[str, Any]:
        encoded: dict[str, Any] = {"outputs": [list(s.layers) for s in result.outputs]}
        if result.exec is not None:
            encoded["exit_code"] = result.exec.exit_code
            encoded["stdout"] = self._store_output(result.exec.stdout)
            encoded["stderr"] = self._store_output(result.exec.stderr)
            encoded["order"] = [list(run) for run in result.exec.order]
        return encoded

    def _store_output(self, data: bytes) -> dict[str, str]:
        # Small outputs (the usual case) live in the cache row: no file to create per step.
        if len(data) <= INLINE_OUTPUT_LIMIT:
            return {"inline": base64.b64encode(data).decode()}
        return {"blob": self._blobs.put_bytes(data)}

    def _load_output(self, stored: dict[str, str]) -> bytes | None:
        if "inline" in stored:
            return base64.b64decode(stored["inline"])
        try:
            return self._blobs.get_bytes(stored["blob"])
        except StateError:  # gone, or not a digest
            return None

    def _decode(self, key: str, stored: dict[str, Any]) -> OpResult | None:
        outputs = tuple(Snapshot(tuple(layers)) for layers in stored["outputs"])
        for snapshot in outputs:
            if not all(self._layers.path(layer).is_dir() for layer in snapshot.layers):
                return None
        outcome = None
        if "exit_code" in stored:
            stdout = self._load_output(stored["stdout"])
            stderr = self._load_output(stored["stderr"])
            if stdout is None or stderr is None:
                return None
            order = tuple((int(stream), int(count)) for stream, count in stored["order"])
            outcome = ExecOutcome(stored["exit_code"], stdout, stderr, order)
        return OpResult(key, outputs, outcome, cached=True)

    def _emit(self, event: StepEvent) -> None:
        for sink in list(self._sinks):
            sink(event)


def _no_secrets(secret_id: str) -> bytes:
    raise SecretError(f"secret {secret_id[:12]}... is not known: this solver holds no secrets")


def _has_blob_output(result: OpResult) -> bool:
    """Whether an exec output is too large for the cache row (and for the memo)."""
    outcome = result.exec
    if outcome is None:
        return False
    return max(len(outcome.stdout), len(outcome.stderr)) > INLINE_OUTPUT_LIMIT


def _names_blobs(stored: dict[str, Any]) -> bool:
    """Whether a cache row keeps an exec output in a blob file (reading it is file I/O)."""
    return any(
        isinstance(stored.get(s), dict) and "blob" in stored[s] for s in ("stdout", "stderr")
    )


def _exit_code_expected(op: Exec, code: int) -> bool:
    if op.expect == "ANY":
        return True
    if op.expect == "FAILURE":
        return code != 0
    return code == 0


def _tail(data: bytes) -> str:
    return data[-OUTPUT_TAIL_BYTES:].decode("utf-8", errors="replace")


async def _in_child_task(work: Callable[[], Awaitable[T]]) -> T:
    """`await work()` in a task of its own. An ended session stops its queries with a bare
    `task.cancel()`, which interrupts even shielded waits (a container's kill, an unmount in
    a thread); a task group turns it into a cancel-scope cancellation of the child, which the
    shields hold against. It also keeps deep chains of steps off one task's stack."""
    box: list[T] = []

    async def run() -> None:
        box.append(await work())

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
    except BaseExceptionGroup as group:
        _raise_first_error(group)
    return box[0]


def _raise_first_error(group: BaseExceptionGroup[BaseException]) -> NoReturn:
    """Raise the error that matters in a task group's failure as itself (an `ExecError`
    stays an `ExecError`), with its own cause: the first one that is not a cancellation
    caused by it."""
    error = _first_error(group)
    raise error from error.__cause__


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    cancelled = anyio.get_cancelled_exc_class()
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first_error(exc)
        if not isinstance(exc, cancelled):
            return exc
    return group.exceptions[0]
