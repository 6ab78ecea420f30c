"""A failed service through the official Dagger Python SDK (PyPI `dagger-io`): a service whose
command exits at once fails its client's step with `dagger.ExecError` (Dagger's shape: the
service's exit code and output), and the service's hostname is a name its clients resolve.

Run by tests/compat/test_dagger_service_errors.py inside `dirk run`. Prints one JSON line.

Usage: python dagger_service_errors.py IMAGE NONCE
"""

import json
import sys

import anyio
import dagger

HTTPD = "mkdir -p /www && echo up > /www/index.html && exec httpd -f -p 8080 -h /www"


async def main(image: str, nonce: str) -> None:
    out: dict[str, object] = {}
    async with dagger.Connection() as client:
        base = client.container().from_(image).with_env_variable("NONCE", nonce)
        web = base.with_exposed_port(8080).as_service(args=["sh", "-c", HTTPD])
        hostname = await web.hostname()
        out["hostname"] = hostname
        out["by_hostname"] = await (
            base.with_service_binding("web", web)
            .with_exec(["wget", "-qO-", f"http://{hostname}:8080/"])
            .stdout()
        )
        broken = base.with_exposed_port(8080).as_service(
            args=["sh", "-c", "echo no-config-file >&2; exit 5"]
        )
        try:
            await base.with_service_binding("db", broken).with_exec(["true"]).sync()
        except dagger.ExecError as error:
            out["exec_error"] = {"exit_code": error.exit_code, "stdout": error.stdout}
    print(json.dumps(out))


if __name__ == "__main__":
    anyio.run(main, *sys.argv[1:3])
