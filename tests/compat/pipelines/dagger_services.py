"""Services through the official Dagger Python SDK (PyPI `dagger-io`): a busybox httpd made a
service with `as_service`, bound by alias to a client container that fetches a page, plus the
service's ports and endpoint, and an explicit start and stop.

Run by tests/compat/test_dagger_services.py inside `dirk run`. Prints one JSON line of results.

Usage: python dagger_services.py IMAGE NONCE
  IMAGE  a busybox image (httpd, wget)
"""

import json
import sys

import anyio
import dagger

SERVE = ["httpd", "-f", "-p", "8080", "-h", "/www"]


async def main(image: str, nonce: str) -> None:
    out: dict[str, object] = {}
    async with dagger.Connection() as client:
        web = (
            client.container()
            .from_(image)
            .with_new_file("/www/index.html", f"hello {nonce}\n")
            .with_exposed_port(8080)
            .as_service(args=SERVE)
        )
        fetch = (
            client.container()
            .from_(image)
            .with_env_variable("NONCE", nonce)
            .with_service_binding("web", web)
            .with_exec(["wget", "-q", "-O-", "http://web:8080/index.html"])
        )
        out["fetched"] = await fetch.stdout()
        out["ports"] = [await port.port() for port in await web.ports()]
        out["endpoint"] = await web.endpoint(scheme="http")
        started = await web.start()
        out["started_endpoint"] = await started.endpoint()
        await started.stop()
    print(json.dumps(out))


if __name__ == "__main__":
    anyio.run(main, *sys.argv[1:3])
