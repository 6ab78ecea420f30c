"""Pull + unpack of an image: dirk's ImageStore against skopeo + umoci, in the same run.

dirk:      ImageStore.resolve + unpack into a fresh state directory (layers in overlayfs format)
baseline:  skopeo copy docker://REF oci:DIR:tag, then umoci unpack --image DIR:tag BUNDLE

Runs alternate (dirk, baseline, dirk, ...) so that both meet the same filesystem conditions
and machine load (CPU time, user + system of the process and its children, is printed too: it
varies less than wall time when other work shares the machine);
everything is deleted only at the end (deleting a large tree on this machine's ext4 slows the
writes that follow it). Prints each run, the medians and dirk's time as a ratio of the
baseline's; target: ratio <= 1.

    .venv/bin/python bench/pull.py [--image 127.0.0.1:5000/python:3.11] [--runs 3] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

from dirk.state import BlobStore, Database, StateLayout
from dirk.workers.images.store import ImageStore
from dirk.workers.snapshots.layers import LayerStore

DEFAULT_IMAGE = "127.0.0.1:5000/python:3.11"


async def dirk_pull(image: str, root: Path) -> float:
    layout = StateLayout(root).ensure()
    db = Database(layout.db_path)
    store = ImageStore(
        BlobStore(layout.blobs, layout.tmp),
        LayerStore(layout, db),
        docker_config=root / "no-docker-config.json",
    )
    try:
        start = time.perf_counter()
        await store.unpack(await store.resolve(image))
        return time.perf_counter() - start
    finally:
        await store.aclose()
        db.close()


def baseline_pull(image: str, root: Path) -> float:
    root.mkdir(parents=True)
    start = time.perf_counter()
    for cmd in (
        ["skopeo", "copy", "--quiet", "--src-tls-verify=false",
         f"docker://{image}", f"oci:{root}/oci:bench"],
        ["umoci", "unpack", "--image", f"{root}/oci:bench", f"{root}/bundle"],
    ):  # fmt: skip
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{result.stderr}")
    return time.perf_counter() - start


def cpu_seconds() -> float:
    """User + system time of this process and its waited-for children (pigz, skopeo, umoci)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default=DEFAULT_IMAGE)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="cProfile one extra dirk run")
    args = parser.parse_args()
    for tool in ("skopeo", "umoci"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing: apt-get install {tool} (or make setup)")

    work = Path(tempfile.mkdtemp(prefix="dirk-bench-pull-"))
    dirk_times: list[float] = []
    base_times: list[float] = []
    dirk_cpu: list[float] = []
    base_cpu: list[float] = []
    try:
        for i in range(args.runs):
            cpu = cpu_seconds()
            dirk_times.append(anyio.run(dirk_pull, args.image, work / f"dirk-{i}"))
            dirk_cpu.append(cpu_seconds() - cpu)
            cpu = cpu_seconds()
            base_times.append(baseline_pull(args.image, work / f"base-{i}"))
            base_cpu.append(cpu_seconds() - cpu)
            print(
                f"run {i + 1}: dirk {dirk_times[-1]:.2f} s (cpu {dirk_cpu[-1]:.2f} s)   "
                f"skopeo+umoci {base_times[-1]:.2f} s (cpu {base_cpu[-1]:.2f} s)",
                flush=True,
            )
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            anyio.run(dirk_pull, args.image, work / "dirk-profile")
            profiler.disable()
            pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative").print_stats(25)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    dirk, base = statistics.median(dirk_times), statistics.median(base_times)
    print(f"pull+unpack {args.image} (median of {args.runs})")
    print(f"  dirk          {dirk:.2f} s   cpu {statistics.median(dirk_cpu):.2f} s")
    print(f"  skopeo+umoci  {base:.2f} s   cpu {statistics.median(base_cpu):.2f} s")
    print(f"  ratio dirk/baseline {dirk / base:.2f} (target <= 1)")


if __name__ == "__main__":
    main()
