"""Publish of an image: dirk's engine against `skopeo copy` between repositories, same run.

dirk:      Container.publish of `from(IMAGE)` (pulled once before timing) to a fresh repository
           of the same registry: layer blobs reused, config + manifest made, blobs the
           registry lacks mounted or uploaded, the manifest pushed
baseline:  skopeo copy docker://IMAGE docker://REGISTRY/<fresh repository>:bench

Then the same to an empty second registry (started here, on another loopback port), where
nothing can be mounted: every blob is uploaded (skopeo reads its blobs from the first).

Rounds alternate (dirk, baseline, dirk, ...) so that both meet the same machine load; prints
each round, the medians and dirk's time as a ratio of the baseline's; target: ratio <= 1.

    .venv/bin/python bench/publish.py [--image 127.0.0.1:5000/python:3.11] [--rounds 5]
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import httpx

from dirk.engine import EngineCore
from dirk.solver.job import BACKGROUND
from dirk.solver.ops import ImagePlatform, ImagePull, Ref
from dirk.workers.images.reference import ImageReference

DEFAULT_IMAGE = "127.0.0.1:5000/python:3.11"


async def dirk_rounds(
    image: str, rounds: int, work: Path, baseline: Callable[[str], float]
) -> dict[str, list[float]]:
    """dirk's rounds, each followed by the baseline's: first to fresh repositories of the
    image's registry, then to fresh empty registries (one each per round)."""
    times: dict[str, list[float]] = {"mount": [], "upload": []}
    async with EngineCore(work / "state") as engine:
        solver = engine.solver
        resolved = await solver.resolve_image(BACKGROUND, image)
        pull = Ref(ImagePull(image, resolved.manifest_digest, resolved.platform))
        await solver.solve(BACKGROUND, pull)  # the pull is not what is measured
        c = resolved.config
        platform = ImagePlatform(
            rootfs=pull,
            platform=resolved.platform,
            env=c.env,
            entrypoint=c.entrypoint,
            cmd=c.cmd,
            workdir=c.workdir,
            user=c.user,
            labels=c.labels,
            exposed_ports=c.exposed_ports,
            base_config=resolved.config_digest,
        )

        async def publish(registry: str) -> float:
            address = f"{registry}/bench-publish-{uuid.uuid4().hex[:10]}/dirk:bench"
            start = time.perf_counter()
            await solver.images_out.publish(BACKGROUND, address, [platform], "", "oci", None)
            return time.perf_counter() - start

        source = ImageReference.parse(image).registry
        for kind in ("mount", "upload"):
            for i in range(rounds):
                with contextlib.ExitStack() as stack:
                    if kind == "mount":
                        ours = theirs = source
                    else:
                        ours = stack.enter_context(empty_registry(work / f"r-{kind}-{i}-dirk"))
                        theirs = stack.enter_context(empty_registry(work / f"r-{kind}-{i}-base"))
                    times[kind].append(await publish(ours))
                    base = await anyio.to_thread.run_sync(baseline, theirs)
                took = times[kind][-1]
                print(f"{kind} round {i + 1}: dirk {took:.3f} s   skopeo {base:.3f} s", flush=True)
    return times


@contextlib.contextmanager
def empty_registry(root: Path) -> Iterator[str]:
    """A docker-registry of our own on a free loopback port, stopped at the end."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    root.mkdir(parents=True)
    config = root / "registry.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root}/data\n"
        f"http:\n  addr: {address}\n"
    )
    proc = subprocess.Popen(
        ["docker-registry", "serve", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(f"http://{address}/v2/", timeout=1, trust_env=False).raise_for_status()
                break
            except httpx.HTTPError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the second docker-registry did not start") from None
                time.sleep(0.05)
        yield address
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def skopeo_copy(image: str, registry: str) -> float:
    target = f"{registry}/bench-publish-{uuid.uuid4().hex[:10]}/skopeo:bench"
    cmd = [
        "skopeo", "copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false",
        f"docker://{image}", f"docker://{target}",
    ]  # fmt: skip
    start = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{result.stderr}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default=DEFAULT_IMAGE)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if shutil.which("skopeo") is None:
        raise SystemExit("skopeo is missing: apt-get install skopeo (or make setup)")
    work = Path(tempfile.mkdtemp(prefix="dirk-bench-publish-"))
    base_times: list[float] = []

    def baseline(registry: str) -> float:
        base_times.append(skopeo_copy(args.image, registry))
        return base_times[-1]

    skopeo_copy(args.image, ImageReference.parse(args.image).registry)  # fills skopeo's caches
    try:
        dirk_times = anyio.run(dirk_rounds, args.image, args.rounds, work, baseline)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for kind, title in (
        ("mount", "to a fresh repository of its registry (blobs mounted)"),
        ("upload", "to an empty registry (every blob uploaded)"),
    ):
        dirk = statistics.median(dirk_times[kind])
        offset = 0 if kind == "mount" else args.rounds
        base = statistics.median(base_times[offset : offset + args.rounds])
        print(f"publish {args.image} {title}, median of {args.rounds}")
        print(f"  dirk         {dirk:.3f} s")
        print(f"  skopeo copy  {base:.3f} s")
        print(f"  ratio dirk/baseline {dirk / base:.2f} (target <= 1)")


if __name__ == "__main__":
    main()
