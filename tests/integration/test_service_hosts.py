"""Sources served by a service (`http(experimentalServiceHost:)`), end to end through the API
layer on a real engine: a busybox httpd service started for the download and stopped after
it, its hostname reached at its bridge address, the file keyed by its content (not by the
service), and downloaded again through a fresh instance when its blob is gone."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from dirk.engine import EngineCore
from dirk.engine.sessions import SessionRegistry
from dirk.errors import HttpFetchError, InvalidArgumentError
from dirk.solver.services import IDLE_GRACE_ENV
from tests.integration.schema_client import SchemaClient

pytestmark = [pytest.mark.integration, pytest.mark.anyio, pytest.mark.usefixtures("no_leaks")]

#: A web root whose file is a token made when the service starts: one per instance.
TOKEN_HTTPD = (
    "mkdir -p /www && cat /proc/sys/kernel/random/uuid > /www/token.txt && "
    "exec httpd -f -p 8080 -h /www"
)


def fixed_httpd(text: str, tag: str) -> str:
    """A web root whose file always holds `text`; `tag` makes the service a different one."""
    return (
        f"mkdir -p /www && echo {text} > /www/token.txt && : {tag} && exec httpd -f -p 8080 -h /www"
    )


@pytest.fixture(autouse=True)
def short_grace() -> Iterator[None]:
    old = os.environ.get(IDLE_GRACE_ENV)
    os.environ[IDLE_GRACE_ENV] = "0.2"
    yield
    if old is None:
        os.environ.pop(IDLE_GRACE_ENV, None)
    else:
        os.environ[IDLE_GRACE_ENV] = old


class Client(SchemaClient):
    def __init__(self, engine: EngineCore, sessions: SessionRegistry, workdir: Path) -> None:
        super().__init__(engine, sessions.create(workdir, {}))

    async def service(self, image: str, script: str) -> dict[str, str]:
        data = await self.data(
            "query($image: String!, $script: String!) { container { from(address: $image) {"
            " withExposedPort(port: 8080) {"
            ' asService(args: ["sh", "-c", $script]) { id hostname } } } } }',
            image=image,
            script=script,
        )
        svc: dict[str, str] = data["container"]["from"]["withExposedPort"]["asService"]
        return svc

    async def idle(self) -> None:
        """Wait until no service instance of the engine runs (the download's hold is over)."""
        with anyio.fail_after(10):
            while self.engine.solver.services.instances():
                await anyio.sleep(0.05)


HTTP = "query($url: String!, $svc: ID) { http(url: $url, experimentalServiceHost: $svc) {"


@pytest.fixture
def client(engine: EngineCore, tmp_path: Path) -> Client:
    return Client(engine, SessionRegistry(), tmp_path)


async def test_http_downloads_from_the_service_and_stops_it(
    client: Client, busybox_ref: str
) -> None:
    svc = await client.service(busybox_ref, TOKEN_HTTPD)
    url = f"http://{svc['hostname']}:8080/token.txt"
    data = await client.data(HTTP + " name contents } }", url=url, svc=svc["id"])
    assert data["http"]["name"] == "token.txt"
    assert len(data["http"]["contents"].strip()) == 36  # the instance's token
    assert client.engine.solver.counters.services_started == 1
    await client.idle()  # held for the download only
    # Without the service the host name means nothing to the engine.
    error = await client.error(HTTP + " contents } }", url=url, svc=None)
    assert isinstance(error, HttpFetchError) and svc["hostname"] in str(error)


async def test_file_is_keyed_by_content_not_by_service(client: Client, busybox_ref: str) -> None:
    nonce = str(time.time_ns())
    outputs, hostnames = [], []
    for tag in ("one", "two"):  # two services (two hostnames) serving the same bytes
        svc = await client.service(busybox_ref, fixed_httpd(nonce, tag))
        hostnames.append(svc["hostname"])
        data = await client.data(
            HTTP + " id } }", url=f"http://{svc['hostname']}:8080/token.txt", svc=svc["id"]
        )
        file_id = data["http"]["id"]
        out = await client.data(
            "query($image: String!, $file: ID!) { container { from(address: $image) {"
            ' withFile(path: "/f", source: $file) {'
            ' withExec(args: ["sh", "-c", "cat /f; cat /proc/sys/kernel/random/uuid"]) {'
            " stdout } } } } }",
            image=busybox_ref,
            file=file_id,
        )
        outputs.append(out["container"]["from"]["withFile"]["withExec"]["stdout"])
    assert hostnames[0] != hostnames[1]
    assert outputs[0].startswith(nonce + "\n")
    assert outputs[1] == outputs[0]  # the step's random token again: a cache hit
    await client.idle()


async def test_gone_blob_is_downloaded_again_through_the_service(
    client: Client, busybox_ref: str
) -> None:
    nonce = str(time.time_ns())
    svc = await client.service(busybox_ref, fixed_httpd(nonce, "again"))
    url = f"http://{svc['hostname']}:8080/token.txt"
    data = await client.data(HTTP + " id } }", url=url, svc=svc["id"])
    await client.idle()
    blobs = client.engine.layout.blobs / "sha256"
    held = [p for p in blobs.iterdir() if p.read_bytes() == f"{nonce}\n".encode()]
    assert len(held) == 1
    held[0].unlink()
    out = await client.data(
        "query($id: ID!) { loadFileFromID(id: $id) { contents } }", id=data["http"]["id"]
    )
    assert out["loadFileFromID"]["contents"] == f"{nonce}\n"
    assert client.engine.solver.counters.services_started == 2
    await client.idle()


async def test_tunnel_is_refused_with_a_clear_error(client: Client, busybox_ref: str) -> None:
    svc = await client.service(busybox_ref, TOKEN_HTTPD)
    data = await client.data(
        "query($svc: ID!) { host { tunnel(service: $svc) { id } } }", svc=svc["id"]
    )
    error = await client.error(
        HTTP + " contents } }", url="http://127.0.0.1:8080/", svc=data["host"]["tunnel"]["id"]
    )
    assert isinstance(error, InvalidArgumentError)
    assert "pass the service it forwards to" in str(error)
