"""The mounts of one exec step, each undone when the step ends, however it ends.

A mount left behind outlives its step until the engine restarts, so every undo runs in a
worker thread shielded from cancellation: a cancelled step (a failing sibling, a caller's
timeout) still unmounts everything it mounted. Mounts a step committed as layers are skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, AsyncExitStack
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import anyio
import anyio.to_thread

from dirk.workers.snapshots.layers import Snapshot
from dirk.workers.snapshots.snapshotter import ActiveMount, Snapshotter

T = TypeVar("T")


async def _run_shielded(fn: Callable[[], object]) -> None:
    """`fn()` in a worker thread, even if the caller is cancelled (cleanup that must happen)."""
    with anyio.CancelScope(shield=True):
        await anyio.to_thread.run_sync(fn)


class StepMounts:
    """Mounts made for one step; `stack` (the step's exit stack) undoes them in reverse order."""

    def __init__(self, snapshotter: Snapshotter, stack: AsyncExitStack) -> None:
        self._snap = snapshotter
        self._stack = stack
        self._committed: set[ActiveMount] = set()

    async def read_write(self, snapshot: Snapshot) -> ActiveMount:
        """A fresh upper dir over `snapshot`: committed with `commit`, else released."""
        active = await anyio.to_thread.run_sync(self._snap.mount_rw, snapshot)

        async def release() -> None:
            if active not in self._committed:
                await _run_shielded(lambda: self._snap.release(active))

        self._stack.push_async_callback(release)
        return active

    async def read_only(self, snapshot: Snapshot) -> Path:
        """A read-only view of `snapshot`, valid until the step ends."""
        return await self._enter(self._snap.mount_ro(snapshot))

    async def commit(self, active: ActiveMount, stubs: Iterable[str] = ()) -> Snapshot:
        """`active`'s upper dir as a new layer on its snapshot (see `Snapshotter.commit`)."""
        snapshot = await anyio.to_thread.run_sync(self._snap.commit, active, stubs)
        self._committed.add(active)
        return snapshot

    async def _enter(self, manager: AbstractContextManager[T]) -> T:
        """Enter a blocking context manager in a worker thread; its exit runs in one too."""
        value = await anyio.to_thread.run_sync(manager.__enter__)

        async def exit_(
            exc_type: type[BaseException] | None,
            exc: BaseException | None,
            tb: TracebackType | None,
        ) -> None:
            await _run_shielded(lambda: manager.__exit__(exc_type, exc, tb))

        self._stack.push_async_exit(exit_)
        return value
