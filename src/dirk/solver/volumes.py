"""Cache volumes: named directories that persist across runs, shared per Dagger's sharing modes.

- SHARED: every exec mounts the same directory at the same time.
- LOCKED: the same directory, but one exec at a time; others wait.
- PRIVATE: an exec gets an instance nobody else is using; a new empty one when all are busy.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio

from dirk.solver.ops import Sharing


def volume_dir_name(name: str) -> str:
    """A readable, collision-free directory name for any volume name."""
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "-", name)[:40].strip("-.") or "volume"
    return f"{readable}-{hashlib.sha256(name.encode()).hexdigest()[:12]}"


class CacheVolumes:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._locks: dict[str, anyio.Lock] = {}
        self._busy: dict[str, set[int]] = {}
        self._creating: dict[str, anyio.Lock] = {}

    def _instance(self, name: str, index: int) -> Path:
        return self.root / volume_dir_name(name) / str(index)

    @asynccontextmanager
    async def acquire(
        self, name: str, sharing: Sharing, seed: Callable[[Path], None] | None = None
    ) -> AsyncIterator[Path]:
        """Yield the directory to mount for volume `name`. `seed` fills a newly created one."""
        if sharing == "LOCKED":
            lock = self._locks.setdefault(name, anyio.Lock())
            async with lock:
                yield await self._ensure(self._instance(name, 0), seed)
            return
        if sharing == "SHARED":
            yield await self._ensure(self._instance(name, 0), seed)
            return
        busy = self._busy.setdefault(name, set())
        index = 0
        while index in busy:
            index += 1
        busy.add(index)
        try:
            yield await self._ensure(self._instance(name, index), seed)
        finally:
            busy.discard(index)

    async def _ensure(self, path: Path, seed: Callable[[Path], None] | None) -> Path:
        if path.is_dir():
            return path
        async with self._creating.setdefault(str(path), anyio.Lock()):
            if path.is_dir():
                return path
            # Filled aside and renamed, so a crash never leaves a half-seeded volume.
            tmp = path.with_name(path.name + ".new")
            await anyio.to_thread.run_sync(_fresh_dir, tmp)
            if seed is not None:
                await anyio.to_thread.run_sync(seed, tmp)
            tmp.rename(path)
        return path


def _fresh_dir(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
