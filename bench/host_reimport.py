"""Re-import of an unchanged host tree vs copying it with `cp -a`, in the same run.

A 10,000-file tree (500 directories, files of 0-4 KiB) is imported once; then, in interleaved
rounds, the engine is asked for the same host directory again (a fresh operation each round,
so the tree is re-checked for changes: the key's digest and the cache lookup) and `cp -a`
copies the tree. Medians of both and their ratio are printed (target: <= 0.2x).

    .venv/bin/python bench/host_reimport.py [--files 10000] [--rounds 9]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

from dirk.engine import EngineCore
from dirk.solver.job import BACKGROUND
from dirk.solver.ops import HostDirectory, Ref
from dirk.workers.snapshots import hostdir


def make_tree(root: Path, files: int) -> None:
    old = time.time_ns() - 10 * hostdir.RACY_NS
    for i in range(files):
        path = root / f"d{i % 500:03d}" / f"f{i:05d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(i % 4096))
        os.utime(path, ns=(old, old))
    for d in root.iterdir():
        os.utime(d, ns=(old, old))
    # ctimes cannot be backdated: wait until the newest leaves the racy window.
    time.sleep(hostdir.RACY_NS / 1e9 + 0.2)


def cp_a(tree: Path, scratch: Path) -> float:
    dest = scratch / "copy"
    started = time.perf_counter()
    subprocess.run(["cp", "-a", str(tree), str(dest)], check=True)
    elapsed = time.perf_counter() - started
    shutil.rmtree(dest)
    return elapsed


async def reimport(engine: EngineCore, tree: Path) -> float:
    """Host keys are never remembered across calls: each solve checks the tree again."""
    op = HostDirectory(str(tree))
    started = time.perf_counter()
    await engine.solver.solve(BACKGROUND, Ref(op))
    return time.perf_counter() - started


async def main_async(files: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="dirk-bench-host-", dir="/var/tmp") as tmp:
        base = Path(tmp)
        tree = base / "tree"
        make_tree(tree, files)
        async with EngineCore(base / "state") as engine:
            started = time.perf_counter()
            await engine.solver.solve(BACKGROUND, Ref(HostDirectory(str(tree))))
            first = time.perf_counter() - started
            ours: list[float] = []
            theirs: list[float] = []
            for _ in range(rounds):
                ours.append(await reimport(engine, tree))
                theirs.append(cp_a(tree, base))
    ours_ms = statistics.median(ours) * 1000
    cp_ms = statistics.median(theirs) * 1000
    print(f"   files: {files}, rounds: {rounds}")
    print(f"   first import (ms):            {first * 1000:8.1f}")
    print(f"   unchanged re-import (ms):     {ours_ms:8.1f}")
    print(f"   cp -a of the tree (ms):       {cp_ms:8.1f}")
    print(f"   ratio re-import / cp -a:      {ours_ms / cp_ms:8.3f}x  (target <= 0.2x)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    anyio.run(main_async, args.files, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
