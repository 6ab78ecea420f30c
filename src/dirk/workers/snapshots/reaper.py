"""Delete discarded mount directories in the background, off a step's critical path.

Removing an upper, work and mount dir costs a few rmdir calls, each up to milliseconds on a busy
disk; a step should not wait for that. A discarded directory is first renamed into the trash
(instant, same filesystem), then deleted by one daemon thread. Whatever is left in the trash by
a killed engine is removed by the next one's `cleanup_stale`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from pathlib import Path

from dirk.errors import SnapshotError
from dirk.workers.syscalls import mounts_under


def remove_tree(path: Path) -> None:
    """rmtree that refuses to delete through a mount point."""
    if not os.path.lexists(path):
        return
    if mounts_under(path):
        raise SnapshotError(f"refusing to delete {path}: something is still mounted below it")
    shutil.rmtree(path)


class Reaper:
    def __init__(self, trash: Path) -> None:
        self.trash = trash
        self._wake = threading.Condition()
        self._pending = 0
        self._thread: threading.Thread | None = None

    def discard(self, path: Path) -> None:
        """Move `path` (unmounted) to the trash now; it is deleted soon after."""
        try:
            os.rename(path, self.trash / path.name)
        except FileNotFoundError:
            return
        except OSError:  # a namesake still in the trash: delete this one right away
            remove_tree(path)
            return
        with self._wake:
            self._pending += 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="dirk-snapshot-reaper", daemon=True
                )
                self._thread.start()
            self._wake.notify()

    def wait(self) -> None:
        """Block until everything discarded so far is deleted (tests, shutdown)."""
        with self._wake:
            self._wake.wait_for(lambda: self._pending == 0)

    def _run(self) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._pending > 0)
                count = self._pending
            for entry in os.scandir(self.trash):
                # Still mounted or busy: cleanup_stale takes it at the next start.
                with contextlib.suppress(OSError, SnapshotError):
                    remove_tree(Path(entry.path))
            with self._wake:
                self._pending -= count
                self._wake.notify_all()
