"""The engine's sentinel: what an engine started dies with it, however the engine ends.

The daemon starts `python -m dirk.engine.sentinel STATE_ROOT` in a session of its own, with
the read end of a pipe as its stdin and the state directory's lock inherited. The engine never
writes to that pipe until it stops cleanly; when its process ends in any other way (SIGKILL,
the OOM killer), the kernel closes the write end and the sentinel reads end-of-file at once.
It then does what the next engine's start would otherwise do, right away: kills the containers
(their runtime, every process in them), unmounts the overlay roots and the bundle tmpfs,
removes the network namespaces and veths, and empties `run/` and `tmp/`. It holds the
state directory's lock meanwhile, so no new engine starts on a half-cleaned state.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import IO

from dirk.state.layout import StateLayout

log = logging.getLogger("dirk.sentinel")

#: What a cleanly stopping engine writes before closing the pipe: nothing is left to clean.
STOPPED = b"stopped\n"


class Sentinel:
    """The engine side: the pipe's write end, and the process watching it."""

    def __init__(self, process: subprocess.Popen[bytes], pipe: IO[bytes]) -> None:
        self._process = process
        self._pipe = pipe

    @property
    def pid(self) -> int:
        return self._process.pid

    def stop(self) -> None:
        """The engine cleaned up after itself: tell the sentinel, and let it exit."""
        try:
            self._pipe.write(STOPPED)
            self._pipe.flush()
        except OSError:
            pass  # the sentinel is gone already; nothing is waiting for the word
        finally:
            self._pipe.close()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def start_sentinel(root: Path, lock_fd: int) -> Sentinel:
    """Start the sentinel of the engine on `root`, which holds the state lock `lock_fd`."""
    read_end, write_end = os.pipe()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "dirk.engine.sentinel", str(root), str(lock_fd)],
            stdin=read_end,
            stdout=subprocess.DEVNULL,
            stderr=None,  # the engine's own log
            pass_fds=(lock_fd,),
            start_new_session=True,  # not in the engine's process group: a ^C there spares it
            cwd="/",
        )
    except BaseException:
        os.close(write_end)
        raise
    finally:
        os.close(read_end)
    return Sentinel(process, os.fdopen(write_end, "wb", buffering=0))


def clean_after_engine(layout: StateLayout) -> None:
    """Kill, unmount and remove what the engine on `layout` left running; idempotent."""
    from dirk.workers.executor import network
    from dirk.workers.executor.executor import engine_tag, remove_leftover_containers
    from dirk.workers.snapshots import overlay
    from dirk.workers.snapshots.reaper import remove_tree
    from dirk.workers.syscalls import mounts_under

    remove_leftover_containers(layout)
    for point in mounts_under(layout.run):  # deepest first
        overlay.detach(point)
    network.remove_leftovers(engine_tag(layout))
    for folder in (layout.run, layout.tmp):
        if folder.is_dir():
            for entry in os.scandir(folder):
                remove_tree(Path(entry.path))


def _watch(root: Path) -> int:
    """Wait for the engine to end; clean up unless it said it did."""
    word = b""
    while chunk := os.read(0, 64):
        word += chunk
    if word == STOPPED:
        return 0
    log.warning("the engine on %s ended without stopping: removing what it left", root)
    clean_after_engine(StateLayout(root))
    log.warning("containers, mounts and network namespaces of %s removed", root)
    return 0


def main(argv: list[str]) -> int:
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    root = Path(argv[1])
    # argv[2] is the inherited lock: held (open) until this process exits, never used.
    return _watch(root)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
