"""Run by test_crash_recovery in a child process, which is then killed with SIGKILL mid-run."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio

from dirk.engine import EngineCore
from dirk.solver.job import BACKGROUND
from dirk.solver.ops import ExecMount, Ref
from tests.integration.engine_helpers import image, sh


def steps(root: Ref) -> tuple[Ref, ExecMount]:
    first = Ref(sh(root, "echo a > /a"))
    second = Ref(sh(first, "echo b > /b; cat /a >> /b"))
    return second, ExecMount("/cache", kind="cache", cache_id="crash-marker")


async def main(state: Path, reference: str) -> None:
    async with EngineCore(state) as engine:
        root, _ = await image(engine, reference)
        prepared, marker = steps(root)
        # Writes a layer, signals through the cache volume, then hangs until killed.
        hang = sh(
            prepared,
            "dd if=/dev/zero of=/big bs=1M count=8; touch /cache/started; sleep 600",
            mounts=[marker],
        )
        await engine.solver.result(BACKGROUND, hang)


if __name__ == "__main__":
    anyio.run(main, Path(sys.argv[1]), sys.argv[2])
