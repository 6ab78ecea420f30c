"""Tunnels written against the official Dagger Python SDK (PyPI `dagger-io`).

Run by tests/compat/test_dagger_tunnels.py inside `dirk run`. `host().tunnel(svc)` of a
busybox httpd service is fetched from this program (on the host); `host().service()` lets a
container fetch from a small HTTP server this program runs on its loopback. Prints one JSON
line of what a Dagger user would look at, or {"error": ...}.

Usage: python dagger_tunnels.py IMAGE NONCE
"""

import http.server
import json
import sys
import threading
import urllib.request
from typing import Any

import anyio
import dagger

HTTPD = 'mkdir -p /www && echo "$NONCE" > /www/index.html && exec httpd -f -p 8080 -h /www'


class Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"host says {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def fetch(url: str) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as response:
        return str(response.read().decode())


async def run(client: dagger.Client, image: str, nonce: str) -> dict[str, Any]:
    base = client.container().from_(image)
    svc = (
        base.with_env_variable("NONCE", nonce)
        .with_exposed_port(8080)
        .as_service(args=["sh", "-c", HTTPD])
    )
    tunnel = client.host().tunnel(svc)
    url = await tunnel.endpoint(scheme="http")
    through_tunnel = await anyio.to_thread.run_sync(fetch, url)
    await tunnel.stop()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    host_svc = client.host().service([dagger.PortForward(backend=port, frontend=80)])
    from_container = await (
        base.with_service_binding("devserver", host_svc)
        .with_env_variable("NONCE", nonce)
        .with_exec(["wget", "-qO-", f"http://devserver/{nonce}"])
        .stdout()
    )
    server.shutdown()
    return {
        "tunnel_url": url.rsplit(":", 1)[0],
        "through_tunnel": through_tunnel.strip(),
        "from_container": from_container,
    }


async def main() -> None:
    image, nonce = sys.argv[1], sys.argv[2]
    async with dagger.Connection() as client:
        try:
            result = await run(client, image, nonce)
        except dagger.DaggerError as error:
            result = {"error": f"{type(error).__name__}: {error}"}
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    anyio.run(main)
