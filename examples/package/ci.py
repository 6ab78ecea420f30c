"""Ship a Python package: build its wheel, test it, build its image from the Dockerfile,
publish the image with a registry credential kept as a secret, and export the wheel.

    .venv/bin/python examples/package/ci.py            (after `make images`)

The project is `examples/package/project` (a package `greet` with a console script). Every
step is cached by content: run it twice and the second run does no work; change a file of
the package and only what depends on it runs again. The wheel lands in
`examples/package/dist/`; the image goes to the local registry as
`127.0.0.1:5000/examples/greet:<version>`, and is pulled back and run to check it.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import anyio

import dirk
from dirk.sdk.gen import BuildArg

IMAGE = "127.0.0.1:5000/python:3.11"
REGISTRY = os.environ.get("GREET_REGISTRY", "127.0.0.1:5000")
HERE = Path(__file__).resolve().parent
PROJECT = HERE / "project"
DIST = HERE / "dist"
VERSION = "0.1.0"


async def main() -> None:
    started = time.monotonic()
    async with dirk.Connection(dirk.Config(log_output=sys.stderr)) as client:
        source = client.host().directory(
            str(PROJECT), exclude=["dist/", "build/", "*.egg-info/", "__pycache__/"]
        )

        # 1. The wheel, built offline with the image's own setuptools.
        built = (
            client.container()
            .from_(IMAGE)
            .with_directory("/src", source)
            .with_workdir("/src")
            .with_exec(
                ["pip", "wheel", "--quiet", "--no-build-isolation", "--no-deps", "-w", "/dist", "."]
            )
            .directory("/dist")
        )
        (wheel_name,) = [name for name in await built.entries() if name.endswith(".whl")]
        wheel = built.file(wheel_name)

        # 2. The tests, against the installed wheel (not the source tree).
        tests = await (
            client.container()
            .from_(IMAGE)
            .with_file(f"/tmp/{wheel_name}", wheel)
            .with_exec(["pip", "install", "--quiet", "--no-index", f"/tmp/{wheel_name}"])
            .with_directory("/tests", source.directory("tests"))
            .with_exec(["python3", "-m", "unittest", "discover", "-s", "/tests", "-v"])
            .stderr()
        )
        print(tests.rstrip())

        # 3. The image, from the project's Dockerfile with the wheel in its context.
        context = source.with_file(f"dist/{wheel_name}", wheel)
        image = context.docker_build(build_args=[BuildArg(name="VERSION", value=VERSION)])
        print((await image.with_exec(["greet", "Dockerfile"]).stdout()).strip())

        # 4. Publish, with the registry credential as a secret: never in a log, an ID, the
        #    cache or the image. (The local test registry takes anonymous pushes too.)
        token = client.set_secret(
            "registry-token", os.environ.get("GREET_REGISTRY_TOKEN", "example-token")
        )
        address = await image.with_registry_auth(REGISTRY, "ci", token).publish(
            f"{REGISTRY}/examples/greet:{VERSION}"
        )
        print(f"published {address}")
        pulled = await client.container().from_(address).with_exec(["greet", "registry"]).stdout()
        print(pulled.strip())

        # 5. The wheel, on the host.
        exported = await wheel.export(str(DIST / wheel_name))
        print(f"exported {exported}")
    print(f"pipeline finished in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    anyio.run(main)
