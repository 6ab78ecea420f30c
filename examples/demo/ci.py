"""The demo pipeline: test a small Python project in the python image, with a pip cache volume.

Run it with `make demo` (which builds the test images and starts the local registry first),
or directly: `.venv/bin/python examples/demo/ci.py`. The second run is served from the cache.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import anyio

import dirk

IMAGE = "127.0.0.1:5000/python:3.11"
PROJECT = Path(__file__).resolve().parent / "project"


async def main() -> None:
    started = time.monotonic()
    async with dirk.Connection(dirk.Config(log_output=sys.stderr)) as client:
        source = client.host().directory(str(PROJECT), exclude=["__pycache__", ".pytest_cache"])
        tests = (
            client.container()
            .from_(IMAGE)
            .with_mounted_cache("/root/.cache/pip", client.cache_volume("demo-pip"))
            .with_exec(["python3", "-m", "venv", "/venv"])
            .with_exec(["/venv/bin/pip", "install", "--quiet", "pytest"])
            .with_directory("/src", source)
            .with_workdir("/src")
            .with_exec(["/venv/bin/pytest", "-q", "--color=no"])
        )
        report = await tests.stdout()
    print(report.rstrip())
    print(f"pipeline finished in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    anyio.run(main)
