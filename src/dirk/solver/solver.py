"""The solver: a generic scheduler that turns operations into snapshots, each at most once,
concurrently where possible. What an operation's key covers and how it runs is its handler's
business (`solver.handlers`, one module per operation type).

For every operation it computes a cache key (in dependency order, without recursion), then in
order: the in-memory results of this engine, an identical operation already running (joined,
not repeated), the persistent cache, and only then the work itself, after solving the inputs
concurrently. Every call carries the `Job` of the request it serves (session, secrets, event
sink). Shared work runs in the engine's task group and stops only when the last job waiting
for it has left. Work is bounded by a capacity limiter; results are stored only once every
layer they name is committed, so a crash at any point leaves a cache that is smaller, never
wrong.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, NoReturn

import anyio
import anyio.to_thread
import attrs

from dirk import timing
from dirk.errors import DirkError, SolveError, TerminalError
from dirk.solver.explain import StepRun, StepRuns, explain
from dirk.solver.handlers import HANDLERS, Handler, HandlerFactory, Step, Workers
from dirk.solver.handlers.exec import ExecHandler
from dirk.solver.images_out import ImagesOut
from dirk.solver.job import EventSink, Job, StepEvent, discard_events
from dirk.solver.leases import Leases
from dirk.solver.opmemo import OpMemo
from dirk.solver.ops import Exec, Op, Ref, ServiceDef
from dirk.solver.results import Counters, ExecOutcome, OpResult
from dirk.solver.services import ServiceManager
from dirk.solver.shared import Flight, SharedWork
from dirk.solver.sources import Sources
from dirk.solver.store import ResultStore, has_blob_output
from dirk.solver.terminal import NO_TERMINAL, TerminalRequest
from dirk.solver.volumes import CacheVolumes
from dirk.state.blobs import BlobStore
from dirk.state.db import Database
from dirk.workers.executor.executor import Executor
from dirk.workers.executor.running import RunningContainer
from dirk.workers.images.auth import using_docker_config
from dirk.workers.images.config import ResolvedImage
from dirk.workers.images.store import ImageStore
from dirk.workers.snapshots.layers import LayerStore, Snapshot
from dirk.workers.snapshots.snapshotter import FileInfo, Snapshotter

__all__ = ["Counters", "ExecOutcome", "OpResult", "Solver", "StepEvent"]

#: How many results of this engine's life stay in memory (each is small: layer ids + output).
MEMO_LIMIT = 20_000

#: Who waits for a step: a request's job, or the step that needs it as an input.
_Member = Job | Flight[Job]


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
        handlers: Mapping[type, HandlerFactory] = HANDLERS,
        sources: Sources | None = None,
    ) -> None:
        self.workers = Workers(
            layers=layers,
            snapshotter=snapshotter,
            images=images,
            executor=executor,
            volumes=volumes,
            blobs=blobs,
        )
        self.counters = self.workers.counters
        if sources is None and layers is not None:
            sources = Sources.default(layers, blobs, snapshotter)
        if sources is not None:  # (solvers that only compute keys have no workers)
            self.workers.sources = sources
        self.images_out = self.workers.images_out = ImagesOut(
            solve_all=self.solve_all,
            db=db,
            blobs=blobs,
            layers=layers,
            snapshotter=snapshotter,
            images=images,
        )
        self.services = self.workers.services = ServiceManager(
            self.workers, solve_all=self.solve_all, key_of=self._ref_key
        )
        self._snap = snapshotter
        self._handlers: dict[type, Handler[Any]] = {t: f(self.workers) for t, f in handlers.items()}
        self._store = ResultStore(db, blobs, layers)
        self._limiter = anyio.CapacityLimiter(max_parallel or max(2, 2 * (os.cpu_count() or 1)))
        #: Keys of operations that are not volatile, for the engine's life (bounded).
        self._keys: OpMemo[str] = OpMemo()
        self._memo: dict[str, OpResult] = {}
        #: What live sessions use, kept from the garbage collector (`solver.gc`).
        self.leases = Leases()
        #: Layers the collector deleted since the memo was last swept of them.
        self._removed_layers: set[str] = set()
        self._shared: SharedWork[Job] = SharedWork()
        self._sinks: list[EventSink] = []
        self._runs = StepRuns(db)

    @property
    def sources(self) -> Sources:
        """Git remotes and HTTP downloads, for the API's reads of refs and authenticated
        downloads."""
        return self.workers.sources

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The solver's lifetime: shared work and service instances run in task groups held
        open meanwhile (the engine enters it at start and leaves it at close, which cancels
        what still runs: steps first, then the services they bound)."""
        async with self.services.serving(), self._shared.serving():
            yield

    async def _ref_key(self, ref: Ref) -> str:
        return await self.key(ref.op)

    # --- public API -----------------------------------------------------------------------

    def subscribe(self, sink: EventSink) -> Callable[[], None]:
        """Receive every StepEvent of every job; returns a function that unsubscribes."""
        self._sinks.append(sink)
        return lambda: self._sinks.remove(sink)

    async def key(self, op: Op) -> str:
        return await self._key(op, {})

    async def result(self, job: Job, op: Op) -> OpResult:
        """All outputs (and exec metadata) of `op`, computing only what is not cached."""
        local: dict[Op, str] = {}
        timing.mark("solve.key")
        key = await self._key(op, local)
        timing.mark("solve.keyed")
        memo = self._memo_get(key)
        if memo is not None:
            self.counters.memo_hits += 1
            self._hold((job,), op, memo)
            if job.events is not discard_events:
                inputs = self._input_keys(op, local)
                job.emit(
                    StepEvent("cached", key, op.describe(), duration=memo.duration, inputs=inputs)
                )
            return memo
        return await self._shared_result(op, key, local, job)

    async def solve(self, job: Job, ref: Ref) -> Snapshot:
        return (await self.result(job, ref.op)).outputs[ref.output]

    async def solve_all(self, job: Job, refs: Sequence[Ref]) -> list[Snapshot]:
        """Solve `refs` concurrently; the first failure is raised as itself (an `ExecError`
        stays an `ExecError`, not an exception group)."""
        results: dict[Ref, Snapshot] = {}

        async def solve_one(ref: Ref) -> None:
            results[ref] = await self.solve(job, ref)

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

    async def interactive(self, job: Job, op: Exec, request: TerminalRequest) -> int:
        """Run `op`'s container with its command on the terminal `job`'s client holds
        (`Container.terminal`): its inputs are solved as usual, the run itself is neither
        cached, shared nor limited (it waits for a person), and it keeps nothing. Returns the
        command's exit code."""
        terminals = job.terminals
        if terminals is None or not terminals.attached:
            raise TerminalError(NO_TERMINAL)
        local: dict[Op, str] = {}
        key = await self._key(op, local)
        refs = list(op.inputs())
        inputs = dict(zip(refs, await self.solve_all(job, refs), strict=True))

        def emit(event: StepEvent) -> None:
            for sink in list(self._sinks):
                sink(event)
            job.emit(event)

        handler = self._handler(op)
        assert isinstance(handler, ExecHandler), "terminals run exec operations"
        step = Step(key, f"terminal {' '.join(op.args)}", inputs, lambda: (job,), emit)

        async def work(flight: Flight[Job]) -> int:
            return await handler.run_interactive(op, step, terminals, request)

        # A task of the engine's task group under a key of its own (never joined): a
        # cancelled caller cancels it through its scope and waits until its container and
        # mounts are gone, as for any step.
        return await self._shared.run(("terminal", object()), work, job)

    async def service_terminal(
        self, job: Job, service: ServiceDef, argv: Sequence[str], request: TerminalRequest
    ) -> int:
        """Run `argv` inside the running container of `service` (started, or joined, and held
        meanwhile) on the terminal `job`'s client holds (`Service.terminal`); the service
        goes on running. Returns the command's exit code."""
        terminals = job.terminals
        if terminals is None or not terminals.attached:
            raise TerminalError(NO_TERMINAL)

        async def work(flight: Flight[Job]) -> int:
            async with self.services.held(job, service) as instance:
                container = instance.container
                assert isinstance(container, RunningContainer), "a container's service"
                async with terminals.open(request) as terminal:
                    code = await self.workers.executor.exec_terminal(container, argv, terminal)
                    terminal.finish(code)
                    return code

        # As `interactive`: a task of the engine's task group, never joined.
        return await self._shared.run(("terminal", object()), work, job)

    async def resolve_image(
        self, job: Job, reference: str, platform: str = "linux/amd64"
    ) -> ResolvedImage:
        """Ask the registry what `reference` is now (tag -> digest, config); pulls no layers.
        The registry is asked with the job's credentials (its session owner's)."""
        with using_docker_config(await job.registry_credentials()):
            return await self.workers.resolve_image(reference, platform)

    async def read_file(self, job: Job, ref: Ref, path: str, limit: int | None = None) -> bytes:
        snapshot = await self.solve(job, ref)
        return await anyio.to_thread.run_sync(self._snap.read_file, snapshot, path, limit)

    async def list_dir(self, job: Job, ref: Ref, path: str) -> list[str]:
        snapshot = await self.solve(job, ref)
        return await anyio.to_thread.run_sync(self._snap.list_dir, snapshot, path)

    async def list_entries(self, job: Job, ref: Ref, path: str) -> list[tuple[str, str]]:
        """(name, kind) of each entry in directory `path`; kind is file, dir, symlink or other."""
        snapshot = await self.solve(job, ref)
        entries = await anyio.to_thread.run_sync(self._snap.list_entries, snapshot, path)
        return [(name, str(kind)) for name, kind in entries]

    async def stat(self, job: Job, ref: Ref, path: str, *, follow: bool = False) -> FileInfo | None:
        snapshot = await self.solve(job, ref)
        return await anyio.to_thread.run_sync(lambda: self._snap.stat(snapshot, path, follow))

    @property
    def snapshotter(self) -> Snapshotter:
        """For reads that need a mounted view (`solver.reads`)."""
        return self._snap

    # --- keys -----------------------------------------------------------------------------

    def _handler(self, op: Op) -> Handler[Any]:
        handler = self._handlers.get(type(op))
        if handler is None:
            raise SolveError(
                op.describe(),
                TypeError(f"no handler is registered for {type(op).__name__} (solver.handlers)"),
            )
        return handler

    async def _key(self, op: Op, local: dict[Op, str]) -> str:
        """The key of `op`. Volatile keys (they depend on host files read now) are remembered
        in `local` for one call; the others for the engine's life."""
        known = self._keys.get(op) or local.get(op)
        if known is not None:
            return known
        return await self._walk_keys(op, local)

    async def _walk_keys(self, top: Op, local: dict[Op, str]) -> str:
        """Key `top` and every unkeyed operation below it, inputs first, with an explicit
        stack: a chain of thousands of steps needs no deeper Python stack than one step."""
        walked: dict[Op, tuple[str, bool]] = {}  # (key, volatile) of this walk

        def known(op: Op) -> tuple[str, bool] | None:
            found = walked.get(op)
            if found is not None:
                return found
            key = self._keys.get(op)
            if key is not None:
                return key, False
            key = local.get(op)
            return (key, True) if key is not None else None

        stack: list[tuple[Op, bool]] = [(top, False)]
        while stack:
            op, expanded = stack.pop()
            if op in walked:
                continue
            if not expanded:
                stack.append((op, True))
                for ref in op.inputs():
                    found = known(ref.op)
                    if found is None:
                        stack.append((ref.op, False))
                    else:  # pinned for this walk: the memo may evict it meanwhile
                        walked.setdefault(ref.op, found)
                continue
            input_keys: list[str] = []
            volatile = False
            for ref in op.inputs():
                found = known(ref.op)
                assert found is not None, "inputs are keyed first"
                input_keys.append(found[0])
                volatile = volatile or found[1]
            key = await self._handler(op).key(op, input_keys)
            volatile = volatile or key.volatile
            walked[op] = (key.digest, volatile)
            if volatile:
                local[op] = key.digest
            else:
                self._keys.put(op, key.digest)
        return walked[top][0]

    # --- results --------------------------------------------------------------------------

    async def _shared_result(
        self, op: Op, key: str, local: dict[Op, str], member: _Member
    ) -> OpResult:
        """The result of `op` under `key`, from the run under way or a new one."""
        if self._shared.running(key):
            self.counters.joined += 1

        async def work(flight: Flight[Job]) -> OpResult:
            return await self._load_or_compute(op, key, local, flight)

        return await self._shared.run(key, work, member)

    @property
    def idle(self) -> bool:
        """Whether no step runs now (the collector deletes unnamed files only then)."""
        return self._shared.idle

    def _memo_get(self, key: str) -> OpResult | None:
        """The in-memory result of `key`, unless the collector deleted a layer it names."""
        memo = self._memo.get(key)
        if memo is not None and self._removed_layers and names_any(memo, self._removed_layers):
            del self._memo[key]
            return None
        return memo

    def _hold(self, jobs: Sequence[Job], op: Op, result: OpResult) -> None:
        """Lease `result` (and the cache volumes `op` mounts) to the sessions of `jobs`."""
        volumes = (
            [m.cache_id for m in op.mounts if m.kind == "cache" and m.cache_id]
            if isinstance(op, Exec)
            else []
        )
        for job in jobs:
            lease = job.lease or self.leases.background
            lease.hold(result)
            lease.volumes.update(volumes)

    def forget(self, keys: Sequence[str], layers: Sequence[str]) -> None:
        """The collector removed these cache rows and layers: results in memory that name
        them are not handed out again (checked on each memo hit until `sweep_memo`)."""
        for key in keys:
            self._memo.pop(key, None)
        self._removed_layers.update(layers)

    def sweep_memo(self) -> None:
        """Drop every result in memory that names a layer the collector removed."""
        if not self._removed_layers:
            return
        removed = self._removed_layers
        for key in [k for k, r in self._memo.items() if names_any(r, removed)]:
            del self._memo[key]
        removed.clear()

    def _remember(self, key: str, result: OpResult) -> None:
        """Keep a result in memory, unless its output is large (a blob file has it)."""
        if has_blob_output(result):
            return
        if len(self._memo) >= MEMO_LIMIT:
            self._memo.pop(next(iter(self._memo)))
        self._memo[key] = result

    async def _load_or_compute(
        self, op: Op, key: str, local: dict[Op, str], flight: Flight[Job]
    ) -> OpResult:
        description = op.describe()

        def emit(event: StepEvent) -> None:
            self._emit(flight, event)

        loaded = await self._store.load(key)
        timing.mark("solve.cache_checked")
        input_keys = self._input_keys(op, local)
        if loaded is not None:
            # Held before anything awaits: the collector cannot take it from now on.
            self._hold(self._shared.waiting(flight), op, loaded)
            self.counters.cache_hits += 1
            emit(StepEvent("cached", key, description, duration=loaded.duration, inputs=input_keys))
            self._remember(key, loaded)
            return loaded
        emit(StepEvent("queued", key, description, inputs=input_keys))
        handler = self._handler(op)
        started = 0.0
        position: str | None = None

        async def run_step(step: Step) -> OpResult:
            nonlocal started
            started = time.monotonic()  # after the inputs and the limiter: the step's own time
            emit(StepEvent("start", key, description, inputs=input_keys))
            return await handler.run(op, step)

        try:
            inputs = await self._solve_inputs(op, local, flight)
            step = Step(key, description, inputs, lambda: self._shared.waiting(flight), emit)
            position, run = await self._step_run(op, key, local)
            if not handler.fields_after_run:
                await self._explain(flight, op, position, run)
            if handler.limited:
                async with self._limiter:
                    result = await run_step(step)
            else:
                result = await run_step(step)
            self._hold(self._shared.waiting(flight), op, result)
        except BaseException as exc:
            if isinstance(exc, anyio.get_cancelled_exc_class()):
                emit(StepEvent("cancelled", key, description))
            elif started:  # an input's failure is that input's event, not this step's
                emit(StepEvent("error", key, description, str(exc).encode()))
            else:
                emit(StepEvent("cancelled", key, description, b"an input failed"))
            if position is not None:
                self._runs.record(position, run)
            if isinstance(exc, Exception) and not isinstance(exc, DirkError):
                raise SolveError(description, exc) from exc
            raise
        self.counters.executed += 1
        timing.mark("step.ran")
        duration = time.monotonic() - started
        result = attrs.evolve(result, duration=duration)
        with anyio.CancelScope(shield=True):  # done work is worth keeping
            await self._store.store(key, result, type(op).__name__, description)
            run = await self._with_result_fields(handler, op, result, run)
            if handler.fields_after_run:
                await self._explain(flight, op, position, run)
            await anyio.to_thread.run_sync(self._runs.record, position, run)
        timing.mark("step.stored")
        self._remember(key, result)
        emit(StepEvent("done", key, description, duration=duration, inputs=input_keys))
        return result

    async def _step_run(self, op: Op, key: str, local: dict[Op, str]) -> tuple[str, StepRun]:
        """The position and record of this run of `op` (`solver.explain`)."""
        refs = op.inputs()
        input_keys = [await self._key(ref.op, local) for ref in refs]
        run = self._runs.run_of(op, key, input_keys, [ref.op.describe() for ref in refs])
        return self._runs.position(op), run

    async def _explain(self, flight: Flight[Job], op: Op, position: str, run: StepRun) -> None:
        """Say why `op` runs to the jobs that asked: an "explain" event."""
        if any(job.explain for job in self._shared.waiting(flight)):
            earlier = await anyio.to_thread.run_sync(self._runs.earlier, position)
            why = explain(run, earlier).encode()
            self._emit(flight, StepEvent("explain", run.key, op.describe(), why))

    async def _with_result_fields(
        self, handler: Handler[Any], op: Op, result: OpResult, run: StepRun
    ) -> StepRun:
        """`run` with the fields its handler reads from the result (a host directory's files)."""
        extra = await handler.explain_fields(op, result)
        return StepRun(run.key, {**run.fields, **extra}, run.labels) if extra else run

    def _input_keys(self, op: Op, local: dict[Op, str]) -> tuple[str, ...]:
        """The keys of `op`'s inputs, each once (all keyed before `op` itself)."""
        refs = op.inputs()
        if not refs:
            return ()
        keys: dict[str, None] = {}
        for ref in refs:
            key = self._keys.get(ref.op) or local.get(ref.op)
            if key is not None:
                keys[key] = None
        return tuple(keys)

    async def _solve_inputs(
        self, op: Op, local: dict[Op, str], flight: Flight[Job]
    ) -> dict[Ref, Snapshot]:
        """The snapshots of `op`'s inputs; each one not in memory is a flight of its own that
        `flight` waits for (so a deep chain is a chain of tasks, not of stack frames)."""
        refs = op.inputs()
        if not refs:
            return {}
        results: dict[Op, OpResult] = {}
        pending: list[tuple[Op, str]] = []
        for input_op in dict.fromkeys(ref.op for ref in refs):
            input_key = await self._key(input_op, local)
            memo = self._memo_get(input_key)
            if memo is not None:
                self.counters.memo_hits += 1
                self._hold(self._shared.waiting(flight), input_op, memo)
                results[input_op] = memo
            else:
                pending.append((input_op, input_key))
        if len(pending) == 1:
            input_op, input_key = pending[0]
            results[input_op] = await self._shared_result(input_op, input_key, local, flight)
        elif pending:

            async def solve_one(input_op: Op, input_key: str) -> None:
                results[input_op] = await self._shared_result(input_op, input_key, local, flight)

            try:
                async with anyio.create_task_group() as tg:
                    for input_op, input_key in pending:
                        tg.start_soon(solve_one, input_op, input_key)
            except BaseExceptionGroup as group:
                _raise_first_error(group)
        return {ref: results[ref.op].outputs[ref.output] for ref in refs}

    def _emit(self, flight: Flight[Job], event: StepEvent) -> None:
        for sink in list(self._sinks):
            sink(event)
        for job in self._shared.waiting(flight):
            if job.events is not discard_events:
                job.emit(event)


def names_any(result: OpResult, layers: set[str]) -> bool:
    return any(layer in layers for snapshot in result.outputs for layer in snapshot.layers)


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
