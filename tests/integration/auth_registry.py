"""A second docker-registry with htpasswd auth (user alice, password wonderland), for tests
of registry credentials. Import the `auth_registry` fixture into a test module to use it."""

from __future__ import annotations

import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import httpx
import pytest

USER = "alice"
PASSWORD = "wonderland"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class AuthRegistry:
    def __init__(self, address: str, log: Path) -> None:
        self.address = address
        self.log = log

    def uploads(self) -> list[str]:
        """The blob upload requests the registry has served so far (from its access log)."""
        text = self.log.read_text(errors="replace")
        return re.findall(r'"(?:POST|PATCH|PUT) /v2/[^ "]+/blobs/uploads/[^ "]*', text)


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthRegistry]:
    """A second docker-registry, with htpasswd auth (user alice) and an access log."""
    root = tmp_path_factory.mktemp("auth-registry")
    address = f"127.0.0.1:{free_port()}"
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=5)).decode()
    (root / "htpasswd").write_text(f"{USER}:{hashed}\n")
    (root / "config.yml").write_text(
        f"""version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: {root}/data
http:
  addr: {address}
  secret: dirk-test
auth:
  htpasswd:
    realm: dirk-test
    path: {root}/htpasswd
"""
    )
    log_path = root / "registry.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(
        ["docker-registry", "serve", str(root / "config.yml")], stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                status = httpx.get(f"http://{address}/v2/", timeout=1, trust_env=False).status_code
                if status == 401:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the htpasswd registry did not start: {log_path.read_text()}")
            time.sleep(0.05)
        yield AuthRegistry(address, log_path)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
