"""Cache volumes: named directories that persist across runs, shared per Dagger's sharing modes.

- SHARED: every exec mounts the same directory at the same time.
- LOCKED: the same directory, but one exec at a time; others wait.
- PRIVATE: an exec gets an instance nobody else is using; a new empty one when all are busy.

A volume's folder (`v/<readable name>-<hash>/`) holds its instances and a `.name` file with the
volume's name, so `dirk cache ls` can show it; its modification time is the volume's last use
(the garbage collector's order).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
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
        #: Mounts of each volume folder open now (the collector never removes those).
        self._mounted: dict[str, int] = {}

    def in_use(self) -> set[str]:
        """Folder names (under `root`) of the volumes mounted now."""
        return {name for name, count in self._mounted.items() if count > 0}

    def _instance(self, name: str, index: int) -> Path:
        return self.root / volume_dir_name(name) / str(index)

    @asynccontextmanager
    async def acquire(
        self, name: str, sharing: Sharing, seed: Callable[[Path], None] | None = None
    ) -> AsyncIterator[Path]:
        """Yield the directory to mount for volume `name`. `seed` fills a newly created one."""
        folder = volume_dir_name(name)
        self._mounted[folder] = self._mounted.get(folder, 0) + 1
        try:
            async with self._acquire(name, sharing, seed) as path:
                _mark_used(path.parent, name)
                yield path
        finally:
            self._mounted[folder] -= 1
            if not self._mounted[folder]:
                del self._mounted[folder]

    @asynccontextmanager
    async def _acquire(
        self, name: str, sharing: Sharing, seed: Callable[[Path], None] | None
    ) -> AsyncIterator[Path]:
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


#: The file in a volume's folder that holds the volume's name.
NAME_FILE = ".name"


def volume_name(folder: Path) -> str:
    """The name of the volume kept in `folder` (its folder name if an older engine made it)."""
    try:
        return (folder / NAME_FILE).read_text()
    except OSError:
        return folder.name


def _mark_used(folder: Path, name: str) -> None:
    name_file = folder / NAME_FILE
    if not name_file.exists():
        with contextlib.suppress(OSError):
            fd = os.open(name_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(name)
    with contextlib.suppress(OSError):
        os.utime(folder)


def _fresh_dir(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
