"""A Dockerfile build written against the official Dagger Python SDK (PyPI `dagger-io`).

Run by tests/compat/test_dagger_docker_build.py inside `dirk run`. It builds the host directory
`ctx/` (relative: resolved against the session's working directory) and prints one JSON line of
what a Dagger user would look at: the container's configuration and its default command's
output, or {"error": ...}.

Usage: python dagger_docker_build.py NONCE
"""

import json
import sys
from typing import Any

import anyio
import dagger


async def build(client: dagger.Client, nonce: str) -> dict[str, Any]:
    context = client.host().directory("ctx")
    built = context.docker_build(
        target="app", build_args=[dagger.BuildArg(name="NONCE", value=nonce)]
    )
    check = built.docker_healthcheck()
    return {
        "stdout": await built.stdout(),
        "entrypoint": await built.entrypoint(),
        "default_args": await built.default_args(),
        "user": await built.user(),
        "workdir": await built.workdir(),
        "label": await built.label("org.example.nonce"),
        "mode": await built.env_variable("MODE"),
        "healthcheck": await check.args(),
    }


async def main() -> None:
    nonce = sys.argv[1]
    async with dagger.Connection() as client:
        try:
            result = await build(client, nonce)
        except dagger.DaggerError as error:
            result = {"error": f"{type(error).__name__}: {error}"}
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    anyio.run(main)
