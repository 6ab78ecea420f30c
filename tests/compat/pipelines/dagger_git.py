"""git and http sources through the official Dagger Python SDK (PyPI `dagger-io`).

Run by tests/compat/test_dagger_git.py with the compat venv's Python inside `dirk run`. Prints
one JSON line of results (a failed step as {"error": ...}).

Usage: python dagger_git.py REPO_URL FILE_URL IMAGE
  REPO_URL  a git repository with a branch `main` holding README, and a tag v1.0.0
  FILE_URL  a file served over HTTP
  IMAGE     a Python image reference (it has git), e.g. 127.0.0.1:5000/python:3.11
"""

import json
import sys
from collections.abc import Awaitable
from typing import Any

import anyio
import dagger


async def pipeline(
    client: dagger.Client, repo_url: str, file_url: str, image: str
) -> dict[str, Any]:
    out: dict[str, Any] = {}

    async def step(name: str, value: Awaitable[Any]) -> None:
        try:
            out[name] = await value
        except dagger.DaggerError as error:
            out[name] = {"error": f"{type(error).__name__}: {error}"}

    repo = client.git(repo_url)
    tree = repo.branch("main").tree()
    await step("entries", tree.entries())
    await step("readme", tree.file("README").contents())
    await step("commit", repo.branch("main").commit())
    await step("tag_commit", repo.tag("v1.0.0").commit())
    await step("tags", repo.tags())
    await step("branches", repo.branches(patterns=["ma*"]))
    await step(
        "git_log",
        client.container()
        .from_(image)
        .with_mounted_directory("/src", tree)
        .with_workdir("/src")
        .with_exec(["git", "log", "--format=%s"])
        .stdout(),
    )
    await step(
        "discarded",
        repo.branch("main").tree(discard_git_dir=True).entries(),
    )
    await step("http", client.http(file_url).contents())
    await step("http_name", client.http(file_url, name="renamed.txt").name())
    return out


async def main() -> None:
    repo_url, file_url, image = sys.argv[1:4]
    async with dagger.Connection() as client:
        result = await pipeline(client, repo_url, file_url, image)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    anyio.run(main)
