"""A small pipeline written against the official Dagger Python SDK (PyPI `dagger-io`).

Run by tests/compat/test_dagger_python.py with the compat venv's Python (never dirk's), either
inside `dirk run` or with `_EXPERIMENTAL_DAGGER_CLI_BIN` naming dirk. It prints one JSON line of
results on stdout (a failed step as {"error": ...}); the test compares it with what a user of
Dagger would expect.

Usage: python dagger_pipeline.py STYLE IMAGE NONCE
  STYLE  "connection" (`async with dagger.Connection() as client`) or "dag" (`dagger.connection()`
         and the global `dag`)
  IMAGE  a Python image reference, e.g. 127.0.0.1:5000/python:3.11
  NONCE  unique per test run: names the cache volume and busts the engine's exec cache
The host directory `src/` (relative: resolved against the session's working directory) must
hold hello.txt and sub/nested.txt.
"""

import asyncio
import json
import sys
from collections.abc import Awaitable
from typing import Any

import anyio
import dagger
from dagger import dag


async def pipeline(client: Any, image: str, nonce: str) -> dict[str, Any]:
    """Each step's result under its name; a step that raises records {"error": ...} instead, so
    one unsupported call does not hide how the others fare."""
    out: dict[str, Any] = {}

    async def step(name: str, value: Awaitable[Any]) -> None:
        try:
            out[name] = await value
        except dagger.QueryError as error:
            out[name] = {"error": f"{type(error).__name__}: {error}", "path": error.error.path}
        except dagger.DaggerError as error:
            out[name] = {"error": f"{type(error).__name__}: {error}"}

    base = client.container().from_(image).with_env_variable("NONCE", nonce)
    await step(
        "python",
        base.with_exec(
            ["python", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"]
        ).stdout(),
    )

    configured = base.with_env_variable("GREETING", "hello dagger").with_workdir("/work")
    await step("env", configured.with_exec(["sh", "-c", 'echo "$GREETING"']).stdout())
    await step("pwd", configured.with_exec(["pwd"]).stdout())
    await step("env_lookup", configured.env_variable("GREETING"))

    with_src = configured.with_directory("/src", client.host().directory("src"))
    await step("host_file", with_src.with_exec(["cat", "/src/hello.txt"]).stdout())
    await step("host_entries", with_src.directory("/src").entries())
    await step("nested", with_src.file("/src/sub/nested.txt").contents())

    written = with_src.with_exec(
        ["sh", "-c", "mkdir -p out && ls /src | tr a-z A-Z > out/listing.txt"]
    )
    await step("written", written.file("/work/out/listing.txt").contents())
    await step(
        "new_file",
        configured.with_new_file("/etc/compat.txt", "made by with_new_file\n")
        .file("/etc/compat.txt")
        .contents(),
    )

    # Leaves awaited together: the client sends these requests concurrently.
    await step(
        "concurrent",
        asyncio.gather(*(base.with_exec(["sh", "-c", f"echo {i}"]).stdout() for i in range(3))),
    )

    async def cache_counts() -> list[str]:
        cache = client.cache_volume(f"compat-{nonce}")
        counts = []
        for run in ("first", "second"):
            stdout = await (
                base.with_mounted_cache("/cache", cache)
                .with_env_variable("RUN", run)
                .with_exec(["sh", "-c", 'echo "$RUN" >> /cache/runs; wc -l < /cache/runs'])
                .stdout()
            )
            counts.append(stdout.strip())
        return counts

    await step("cache_counts", cache_counts())

    async def exec_error() -> dict[str, Any] | None:
        try:
            await base.with_exec(["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3"]).sync()
        except dagger.ExecError as error:
            return {
                "exit_code": error.exit_code,
                "stdout": error.stdout,
                "stderr": error.stderr,
                "cmd": error.command,
                "message": str(error),
            }
        return None

    await step("exec_error", exec_error())

    async def missing_command() -> dict[str, Any] | None:
        """Dagger answers a command missing from the image as a failed exec with exit code 1."""
        try:
            await base.with_exec(["no-such-command", "--flag"]).sync()
        except dagger.ExecError as error:
            return {"exit_code": error.exit_code, "stderr": error.stderr, "cmd": error.command}
        return None

    await step("missing_command", missing_command())

    allowed = base.with_exec(["sh", "-c", "exit 5"], expect=dagger.ReturnType.ANY)
    await step("expect_any_exit_code", allowed.exit_code())

    async def after_sync() -> str:
        synced = await base.with_exec(["sh", "-c", "echo synced > /synced.txt"]).sync()
        return await synced.file("/synced.txt").contents()

    await step("after_sync", after_sync())
    return out


async def main() -> None:
    style, image, nonce = sys.argv[1:4]
    if style == "connection":
        async with dagger.Connection() as client:
            result = await pipeline(client, image, nonce)
    elif style == "dag":
        async with dagger.connection():
            result = await pipeline(dag, image, nonce)
    else:
        raise SystemExit(f"unknown style {style!r}: use 'connection' or 'dag'")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    anyio.run(main)
