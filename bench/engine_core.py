"""Engine-core benchmarks, each against a baseline measured in the same run.

1. One uncached `exec true` through the whole solver (key, cache miss, overlay mount, bundle,
   runtime, commit, cache write) vs the raw runtime started on an equivalent bundle over the
   same overlay-mounted root filesystem.
2. A 20-step pipeline: its cold run vs its fully cached re-run, in the same engine (memory)
   and after an engine restart (persistent cache only).

    .venv/bin/python bench/engine_core.py [--runs 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dirk.engine import EngineCore
from dirk.solver.job import BACKGROUND
from dirk.solver.ops import Exec, ImagePull, Ref
from exec_baseline import RawRuntime

BUSYBOX = "127.0.0.1:5000/busybox:latest"
PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


async def _image(engine: EngineCore) -> Ref:
    resolved = await engine.solver.resolve_image(BACKGROUND, BUSYBOX)
    root = Ref(ImagePull(BUSYBOX, resolved.manifest_digest))
    await engine.solver.solve(BACKGROUND, root)
    return root


async def exec_overhead(state: Path, runs: int) -> dict[str, float]:
    async with EngineCore(state) as engine:
        root = await _image(engine)
        snapshot = await engine.solver.solve(BACKGROUND, root)
        active = engine.snapshotter.mount_rw(snapshot)
        raw = RawRuntime(active.merged, engine.runtime_name, "prepared")
        raw_ip = RawRuntime(active.merged, engine.runtime_name, "ip")
        dirk_times: list[float] = []
        raw_times: list[float] = []
        raw_ip_times: list[float] = []
        try:
            for i in range(runs + 3):
                op = Exec(root=root, args=("true",), env=(PATH, f"BENCH_RUN={time.time_ns()}"))
                started = time.perf_counter()
                await engine.solver.result(BACKGROUND, op)
                elapsed = time.perf_counter() - started
                raw_elapsed = raw.run_once()
                raw_ip_elapsed = raw_ip.run_once()
                if i >= 3:
                    dirk_times.append(elapsed)
                    raw_times.append(raw_elapsed)
                    raw_ip_times.append(raw_ip_elapsed)
        finally:
            raw.close()
            raw_ip.close()
            engine.snapshotter.release(active)
    dirk_ms = statistics.median(dirk_times) * 1000
    raw_ms = statistics.median(raw_times) * 1000
    raw_ip_ms = statistics.median(raw_ip_times) * 1000
    return {
        "dirk exec true (ms)": dirk_ms,
        "raw runtime, netns ready (ms)": raw_ms,
        "raw runtime + netns setup (ms)": raw_ip_ms,
        "ratio dirk / raw (netns ready)": dirk_ms / raw_ms,
        "ratio dirk / raw (+ netns setup)": dirk_ms / raw_ip_ms,
    }


def _pipeline(root: Ref, steps: int, salt: str) -> Exec:
    step = root
    op = Exec(root=root, args=("true",))
    for i in range(steps):
        op = Exec(root=step, args=("sh", "-c", f"echo {salt}-{i} >> /log"), env=(PATH,))
        step = Ref(op)
    return op


async def cached_pipeline(state: Path, steps: int = 20) -> dict[str, float]:
    salt = str(time.time_ns())
    async with EngineCore(state) as engine:
        root = await _image(engine)
        started = time.perf_counter()
        await engine.solver.result(BACKGROUND, _pipeline(root, steps, salt))
        cold = time.perf_counter() - started
        started = time.perf_counter()
        await engine.solver.result(BACKGROUND, _pipeline(root, steps, salt))
        warm_memory = time.perf_counter() - started
    started = time.perf_counter()
    async with EngineCore(state) as engine:
        engine_start = time.perf_counter() - started
        resolved = await engine.solver.resolve_image(BACKGROUND, BUSYBOX)
        root = Ref(ImagePull(BUSYBOX, resolved.manifest_digest))
        started = time.perf_counter()
        last = _pipeline(root, steps, salt)
        await engine.solver.result(BACKGROUND, last)
        warm_disk = time.perf_counter() - started
        assert engine.solver.counters.execs == 0, "the cached re-run executed something"
    return {
        f"{steps}-step pipeline cold (ms)": cold * 1000,
        f"{steps}-step re-run, same engine (ms)": warm_memory * 1000,
        f"{steps}-step re-run after restart (ms)": warm_disk * 1000,
        "engine start on a warm state dir (ms)": engine_start * 1000,
        "ratio cold / cached after restart": cold / warm_disk,
    }


async def main(runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="dirk-bench-") as tmp:
        results = await exec_overhead(Path(tmp) / "exec", runs)
        results.update(await cached_pipeline(Path(tmp) / "pipeline"))
    for name, value in results.items():
        print(f"  {name:42} {value:9.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    anyio.run(main, parser.parse_args().runs)
