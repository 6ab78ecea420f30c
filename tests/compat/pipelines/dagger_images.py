"""Images out through the official Dagger Python SDK (PyPI `dagger-io`): publish, export (OCI
and Docker media types, forced compression) and a tarball imported back. Run by
tests/compat/test_dagger_images.py with the compat venv's Python, inside `dirk run`; prints one
JSON line of results (a failed step as {"error": ...}).

Usage: python dagger_images.py IMAGE ADDRESS NONCE
  IMAGE    the base image, e.g. 127.0.0.1:5000/python:3.11
  ADDRESS  where to publish, e.g. 127.0.0.1:5000/compat/app:NONCE
  NONCE    written into the image, so the test can find it again
"""

import json
import sys
from collections.abc import Awaitable
from typing import Any

import anyio
import dagger


async def pipeline(client: Any, image: str, address: str, nonce: str) -> dict[str, Any]:
    out: dict[str, Any] = {}

    async def step(name: str, value: Awaitable[Any]) -> None:
        try:
            out[name] = await value
        except dagger.DaggerError as error:
            out[name] = {"error": f"{type(error).__name__}: {error}"}

    app = (
        client.container()
        .from_(image)
        .with_new_file("/nonce.txt", nonce + "\n")
        .with_env_variable("COMPAT", "yes")
        .with_label("org.example.nonce", nonce)
        .with_entrypoint(["cat"])
        .with_default_args(["/nonce.txt"])
    )
    await step("publish", app.publish(address))
    await step("export", app.export("app.tar"))
    await step(
        "export_docker",
        app.export("docker.tar", media_types=dagger.ImageMediaTypes.DockerMediaTypes),
    )
    await step(
        "export_zstd",
        app.export("zstd.tar", forced_compression=dagger.ImageLayerCompression.Zstd),
    )
    imported = client.container().import_(app.as_tarball())
    await step("imported_stdout", imported.with_exec([], use_entrypoint=True).stdout())
    await step("imported_env", imported.env_variable("COMPAT"))
    pulled = client.container().from_(address)
    await step("pulled_label", pulled.label("org.example.nonce"))
    return out


async def main() -> None:
    image, address, nonce = sys.argv[1:4]
    async with dagger.Connection() as client:
        result = await pipeline(client, image, address, nonce)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    anyio.run(main)
