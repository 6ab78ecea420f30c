"""The composition root: one engine = state + workers + solver, over one state directory.

Start-up is also recovery: whatever a previous engine (possibly killed with SIGKILL) left in
`run/` and `tmp/` is unmounted, killed and deleted, and layer directories that no database row
names are removed. Cache entries are only written after their layers are committed, so what
remains is always usable.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType

import anyio.to_thread

from dirk.engine.telemetry import Telemetry, from_environment
from dirk.solver.gc import GarbageCollector
from dirk.solver.gc_policy import CachePolicy, background_interval
from dirk.solver.solver import Solver
from dirk.solver.sources import Sources
from dirk.solver.volumes import CacheVolumes
from dirk.state.blobs import BlobStore
from dirk.state.db import Database
from dirk.state.layout import StateLayout, default_state_dir
from dirk.workers.executor.executor import Executor
from dirk.workers.images.store import ImageStore
from dirk.workers.snapshots.layers import LayerStore
from dirk.workers.snapshots.snapshotter import Snapshotter
from dirk.workers.sources.git import GitSources
from dirk.workers.sources.http import HttpSources


class EngineCore:
    def __init__(
        self,
        state_dir: Path | None = None,
        *,
        runtime: str | None = None,
        max_parallel: int | None = None,
        insecure_registries: Sequence[str] = (),
    ) -> None:
        self.layout = StateLayout(state_dir or default_state_dir())
        self._runtime = runtime
        self._max_parallel = max_parallel
        self._insecure = tuple(insecure_registries)
        self._solver: Solver | None = None
        self._gc: GarbageCollector | None = None
        self._executor: Executor | None = None
        self._closing = AsyncExitStack()
        #: OpenTelemetry spans of requests and steps, when the environment asks for them.
        self.telemetry: Telemetry | None = None

    @property
    def solver(self) -> Solver:
        if self._solver is None:
            raise RuntimeError("the engine is not started: use `async with EngineCore(...)`")
        return self._solver

    @property
    def gc(self) -> GarbageCollector:
        """The cache's garbage collector (`engine.localCache`, `dirk cache`)."""
        if self._gc is None:
            raise RuntimeError("the engine is not started: use `async with EngineCore(...)`")
        return self._gc

    @property
    def runtime_name(self) -> str:
        """The OCI runtime in use ("crun" or "runc")."""
        if self._executor is None:
            raise RuntimeError("the engine is not started: use `async with EngineCore(...)`")
        return self._executor.runtime

    async def start(self) -> None:
        """Open the state, recover what a previous engine left, start the workers. If any of
        it fails, what was already opened is closed again. `start` and `aclose` must be
        called by one task (the solver's task group lives in it), as `async with` does."""
        async with AsyncExitStack() as stack:
            layout = self.layout.ensure()
            self.telemetry = telemetry = from_environment()
            if telemetry is not None:
                stack.push_async_callback(anyio.to_thread.run_sync, telemetry.shutdown)
            db = Database(layout.db_path)
            stack.callback(db.close)
            blobs = BlobStore(layout.blobs, layout.tmp)
            layers = LayerStore(layout, db)
            self.snapshotter = snapshotter = Snapshotter(layout, layers)
            await anyio.to_thread.run_sync(self._recover, snapshotter, layers)
            executor = Executor(layout, self._runtime)
            await executor.start()
            stack.push_async_callback(executor.aclose)
            images = ImageStore(blobs, layers, insecure_registries=self._insecure)
            stack.push_async_callback(images.aclose)
            http = HttpSources(blobs)
            stack.push_async_callback(http.aclose)
            sources = Sources(GitSources(layout.git, layout.tmp), http, layers, blobs, snapshotter)
            self._solver = Solver(
                db=db,
                blobs=blobs,
                layers=layers,
                snapshotter=snapshotter,
                images=images,
                executor=executor,
                volumes=CacheVolumes(layout.volumes),
                sources=sources,
                max_parallel=self._max_parallel,
            )
            # Last in, first out: running steps are cancelled and finished before the
            # workers they use close.
            await stack.enter_async_context(self._solver.running())
            # The policy is read now, so a bad DIRK_GC_* value stops the start with its error.
            policy = CachePolicy.from_environment(os.environ, shutil.disk_usage(layout.root).total)
            self._gc = GarbageCollector(
                solver=self._solver,
                db=db,
                layers=layers,
                blobs=blobs,
                layout=layout,
                policy=policy,
                interval=background_interval(os.environ),
            )
            await stack.enter_async_context(self._gc.running())
            self._executor = executor
            self._closing = stack.pop_all()

    def _recover(self, snapshotter: Snapshotter, layers: LayerStore) -> None:
        snapshotter.cleanup_stale()
        for entry in self.layout.tmp.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
        layers.collect_garbage()

    async def aclose(self) -> None:
        """Close the workers and the database, each even if closing another fails."""
        self._solver = None
        self._executor = None
        self._gc = None
        await self._closing.aclose()

    async def __aenter__(self) -> EngineCore:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
