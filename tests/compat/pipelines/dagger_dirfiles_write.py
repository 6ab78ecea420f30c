"""The writing side of Directory, File and Container, written against the official Dagger
Python SDK. Run by tests/compat/test_dagger_dirfiles_write.py inside `dirk run` with the compat
venv's Python; prints one JSON line of results (a failed step records {"error": ...}).

Usage: python dagger_dirfiles_write.py IMAGE NONCE
"""

import json
import sys
from collections.abc import Awaitable
from typing import Any

import anyio
import dagger


async def pipeline(client: Any, image: str, nonce: str) -> dict[str, Any]:
    out: dict[str, Any] = {}

    async def step(name: str, value: Awaitable[Any]) -> None:
        try:
            out[name] = await value
        except dagger.DaggerError as error:
            out[name] = {"error": f"{type(error).__name__}: {error}"}

    before = client.directory().with_new_file("a.txt", "one\n").with_new_file("gone.txt", "g")
    after = (
        before.with_new_file("a.txt", nonce + "\n")
        .without_file("gone.txt")
        .with_symlink("a.txt", "link")
        .with_timestamps(1600000000)
    )
    changes = after.changes(before)
    await step("added", changes.added_paths())
    await step("modified", changes.modified_paths())
    await step("removed", changes.removed_paths())
    await step("empty", changes.is_empty())
    await step("patch_has_nonce", _contains(changes.as_patch().contents(), "+" + nonce))
    await step("applied", before.with_changes(changes).file("a.txt").contents())
    ctr = (
        client.container()
        .from_(image)
        .with_volatile_variable("VOL", nonce)
        .with_mounted_directory("/d", after)
        # Apart in time: two pipes carry no order of their own, only the moments they are read.
        .with_exec(
            [
                "sh",
                "-c",
                "readlink /d/link; sleep 0.2; stat -c %Y /d/a.txt >&2; sleep 0.2; echo $VOL",
            ]
        )
    )
    await step("combined", ctr.combined_output())
    await step("mounts", ctr.without_mount("/d").mounts())
    env = client.env_file().with_variable("GREETING", "hi").with_variable("MSG", "${GREETING}!")
    await step("env_get", env.get("MSG"))
    hc = ctr.with_docker_healthcheck(["true"], interval="5s").docker_healthcheck()
    await step("healthcheck", _both(hc.args(), hc.interval()))
    await step("with_error", client.directory().with_error("stop: " + nonce).entries())
    return out


async def _contains(text: Awaitable[str], part: str) -> bool:
    return part in await text


async def _both(a: Awaitable[Any], b: Awaitable[Any]) -> list[Any]:
    return [await a, await b]


async def main() -> None:
    image, nonce = sys.argv[1], sys.argv[2]
    async with dagger.Connection(dagger.Config()) as client:
        result = await pipeline(client, image, nonce)
    print(json.dumps(result))


if __name__ == "__main__":
    anyio.run(main)
