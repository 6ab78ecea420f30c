"""Host files in and out and directory reads, written against the official Dagger Python SDK.

Run by tests/compat/test_dagger_dirfiles.py inside `dirk run` with the compat venv's Python.
Prints one JSON line of results; a failed step records {"error": ...}.

Usage: python dagger_dirfiles.py NONCE
The working directory holds `src/` (hello.txt, sub/nested.txt); the program adds `repo/`.
"""

import json
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import anyio
import dagger


async def pipeline(client: Any, nonce: str) -> dict[str, Any]:
    out: dict[str, Any] = {}

    async def step(name: str, value: Awaitable[Any]) -> None:
        try:
            out[name] = await value
        except dagger.DaggerError as error:
            out[name] = {"error": f"{type(error).__name__}: {error}"}

    repo = Path("repo")
    (repo / "lib").mkdir(parents=True, exist_ok=True)
    (repo / ".gitignore").write_text("*.log\n")
    (repo / "app.py").write_text("print('TODO: greet')\n")
    (repo / "lib" / "util.py").write_text("# TODO: tidy\n")
    (repo / "debug.log").write_text("TODO: ignored\n")
    src = client.host().directory("repo", gitignore=True)
    await step("glob", src.glob("**/*.py"))
    await step("entries", src.entries())

    async def search() -> list[list[Any]]:
        hits = await src.search("TODO: (\\w+)")
        return [
            [
                await h.file_path(),
                await h.line_number(),
                [await s.text() for s in await h.submatches()],
            ]
            for h in hits
        ]

    await step("search", search())

    async def stat() -> list[Any]:
        info = src.stat("lib")
        return [str(await info.file_type()), await info.name()]

    await step("stat", stat())
    await step("exists", src.exists("app.py", expected_type=dagger.ExistsType.REGULAR_TYPE))
    await step(
        "digest_eq",
        _equal(src.filter(exclude=["lib/"]).digest(), src.without_directory("lib").digest()),
    )
    await step("file_digest", src.file("app.py").digest(exclude_metadata=True))
    await step("replaced", src.file("app.py").with_replaced("TODO: greet", nonce).contents())
    await step("export", src.export("exported"))
    await step("file_export", src.file("app.py").export("exported/copy.py"))
    await step("missing", src.file("nope.txt").contents())
    return out


async def _equal(a: Awaitable[str], b: Awaitable[str]) -> bool:
    return (await a) == (await b)


async def main() -> None:
    nonce = sys.argv[1]
    async with dagger.Connection(dagger.Config()) as client:
        result = await pipeline(client, nonce)
    print(json.dumps(result))


if __name__ == "__main__":
    anyio.run(main)
