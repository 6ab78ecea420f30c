"""Tunnels between the host and services, end to end through the API layer on a real engine:
`Service.up` and `Host.tunnel` reached from the host with httpx, `Host.service` reached from a
busybox container with wget, random ports, stop and session end closing the listeners, and
nothing left behind (namespaces, veths, containers)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest

from dirk.engine import EngineCore
from dirk.engine.sessions import SessionRegistry
from dirk.errors import PortForwardError
from dirk.solver.services import IDLE_GRACE_ENV
from dirk.workers.executor import network
from dirk.workers.executor.executor import engine_tag
from dirk.workers.hostaccess import HostUser
from tests.integration.schema_client import SchemaClient
from tests.integration.sdk_engine import clean_env, foreground_engine

pytestmark = [pytest.mark.integration, pytest.mark.anyio, pytest.mark.usefixtures("no_leaks")]

#: A web root whose index is a token made when the service starts: one per instance.
HTTPD = (
    "mkdir -p /www && cat /proc/sys/kernel/random/uuid > /www/index.html && "
    "exec httpd -f -p $PORT -h /www"
)


class Client(SchemaClient):
    """One session, querying the schema the way the wire server does."""

    async def httpd(self, image: str, port: int = 8080) -> str:
        """The id of a busybox httpd service on `port`."""
        data = await self.data(
            "query($image: String!, $script: String!, $port: Int!, $p: String!) { container {"
            ' from(address: $image) { withEnvVariable(name: "PORT", value: $p) {'
            " withExposedPort(port: $port) {"
            ' asService(args: ["sh", "-c", $script]) { id } } } } } }',
            image=image,
            script=HTTPD,
            port=port,
            p=str(port),
        )
        sid: str = data["container"]["from"]["withEnvVariable"]["withExposedPort"]["asService"][
            "id"
        ]
        return sid

    async def up_in(self, tg: anyio.abc.TaskGroup, sid: str, args: str) -> anyio.CancelScope:
        """`Service.up(<args>)` running in `tg` until the returned scope is cancelled (what
        the wire server does when the client goes away)."""
        scope = anyio.CancelScope()

        async def run() -> None:
            with scope:
                result = await self.run(
                    f"query($s: ID!) {{ loadServiceFromID(id: $s) {{ up{args} }} }}", s=sid
                )
                raise AssertionError(f"up returned: {result}")

        tg.start_soon(run)
        return scope


@pytest.fixture(autouse=True)
def short_grace() -> Iterator[None]:
    old = os.environ.get(IDLE_GRACE_ENV)
    os.environ[IDLE_GRACE_ENV] = "0.2"
    yield
    if old is None:
        os.environ.pop(IDLE_GRACE_ENV, None)
    else:
        os.environ[IDLE_GRACE_ENV] = old


@pytest.fixture
def sessions() -> SessionRegistry:
    return SessionRegistry()


@pytest.fixture
def client(engine: EngineCore, sessions: SessionRegistry, tmp_path: Path) -> Client:
    return Client(engine, sessions.create(tmp_path, {}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


async def _get(url: str) -> str:
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        response = await http.get(url)
        response.raise_for_status()
        return response.text


async def _eventually(check: Callable[[], bool], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        await anyio.sleep(0.05)
    return check()


def _ours(engine: EngineCore) -> tuple[list[str], list[str], list[str]]:
    """This engine's network namespaces, host-side veths and containers still present."""
    tag = engine_tag(engine.layout)
    netns = [n for n in os.listdir(network.NETNS_DIR) if n.startswith(f"dirk-{tag}-")]
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    veths = [line.split()[0] for line in links.splitlines() if line.startswith(f"dk{tag}")]
    roots = engine.layout.run / "runtime"
    containers = [c.name for r in roots.iterdir() if r.is_dir() for c in r.iterdir() if c.is_dir()]
    return netns, veths, containers


@pytest.fixture
async def host_server() -> AsyncIterator[int]:
    """An HTTP-ish server on the host's loopback answering `host says <request line>`."""

    async def answer(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = await stream.receive()
                data += chunk
            line = data.split(b"\r\n", 1)[0]
            body = b"host says " + line
            await stream.send(
                b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
            )

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, answer)
        yield listener.extra(anyio.abc.SocketAttribute.local_port)
        tg.cancel_scope.cancel()


# --- Service.up ---------------------------------------------------------------------------


async def test_service_up_reaches_the_service_from_the_host_until_cancelled(
    client: Client, busybox_ref: str
) -> None:
    sid = await client.httpd(busybox_ref)
    port = _free_port()
    async with anyio.create_task_group() as tg:
        up = await client.up_in(tg, sid, f"(ports: [{{frontend: {port}, backend: 8080}}])")
        assert await _eventually(lambda: not _refused(port), 60), "up never listened"
        token = await _get(f"http://127.0.0.1:{port}/")
        assert len(token.strip()) == 36  # the service's uuid
        up.cancel()
    assert await _eventually(lambda: _refused(port)), "the tunnel outlived its request"


async def test_service_up_random_tells_its_ports(client: Client, busybox_ref: str) -> None:
    # What a progress view of the session sees (GET /sessions/<token>/events).
    viewer = client.session.hub.subscribe()
    records: list[dict[str, Any]] = []

    def seen() -> list[dict[str, Any]]:
        records.extend(json.loads(line) for line in viewer.take().splitlines())
        return records

    def started() -> str | None:
        lines = [r["data"] for r in seen() if r["type"] == "output"]
        return next((line for line in lines if "tunnel started" in line), None)

    sid = await client.httpd(busybox_ref)
    async with anyio.create_task_group() as tg:
        up = await client.up_in(tg, sid, "(random: true)")
        assert await _eventually(lambda: started() is not None, 60)
        line = started()
        assert line is not None
        port = int(line.split("port=")[1].split()[0])
        assert f"http_url=http://127.0.0.1:{port}" in line
        assert len((await _get(f"http://127.0.0.1:{port}/")).strip()) == 36
        # The same tunnel (Host.tunnel of the service, random ports) names the same port.
        data = await client.data(
            "query($s: ID!) { host { tunnel(service: $s) { endpoint ports { port } } } }", s=sid
        )
        assert data["host"]["tunnel"] == {
            "endpoint": f"127.0.0.1:{port}",
            "ports": [{"port": port}],
        }
        up.cancel()
    assert await _eventually(lambda: _refused(port))
    # A step of its own for progress views: running, its ports as output, done.
    tunnel = next(r["id"] for r in seen() if r["type"] == "output" and "tunnel" in r["data"])
    states = [r.get("state", r["type"]) for r in records if r["id"] == tunnel]
    assert states == ["running", "output", "done"], states


async def test_service_up_without_ports_uses_the_same_port_numbers(
    client: Client, busybox_ref: str
) -> None:
    port = _free_port()
    sid = await client.httpd(busybox_ref, port)
    async with anyio.create_task_group() as tg:
        up = await client.up_in(tg, sid, "")
        assert await _eventually(lambda: not _refused(port), 60)
        assert len((await _get(f"http://127.0.0.1:{port}/")).strip()) == 36
        up.cancel()
    assert await _eventually(lambda: _refused(port))


async def test_container_up_is_as_service_then_up(client: Client, busybox_ref: str) -> None:
    port = _free_port()
    async with anyio.create_task_group() as tg:
        scope = anyio.CancelScope()

        async def run() -> None:
            with scope:
                await client.run(
                    "query($image: String!, $script: String!, $p: Int!) { container {"
                    ' from(address: $image) { withEnvVariable(name: "PORT", value: "8080") {'
                    " withExposedPort(port: 8080) {"
                    ' up(ports: [{frontend: $p, backend: 8080}], args: ["sh", "-c", $script])'
                    " } } } } }",
                    image=busybox_ref,
                    script=HTTPD,
                    p=port,
                )

        tg.start_soon(run)
        assert await _eventually(lambda: not _refused(port), 60)
        assert len((await _get(f"http://127.0.0.1:{port}/")).strip()) == 36
        scope.cancel()
    assert await _eventually(lambda: _refused(port))


# --- Host.tunnel --------------------------------------------------------------------------


async def test_host_tunnel_listens_from_start_until_stop(client: Client, busybox_ref: str) -> None:
    sid = await client.httpd(busybox_ref)
    data = await client.data(
        'query($s: ID!) { host { tunnel(service: $s) { id endpoint(scheme: "http") } } }',
        s=sid,
    )
    url = data["host"]["tunnel"]["endpoint"]
    assert url.startswith("http://127.0.0.1:")
    port = int(url.rsplit(":", 1)[1])
    first = await _get(url)
    assert len(first.strip()) == 36
    assert await _get(url) == first  # one service instance behind it
    tid = data["host"]["tunnel"]["id"]
    await client.data("query($t: ID!) { loadServiceFromID(id: $t) { stop } }", t=tid)
    assert _refused(port), "stop left the tunnel listening"


async def test_session_end_closes_tunnels(
    client: Client, sessions: SessionRegistry, busybox_ref: str
) -> None:
    sid = await client.httpd(busybox_ref)
    port = _free_port()
    data = await client.data(
        "query($s: ID!, $p: Int!) { host {"
        " tunnel(service: $s, ports: [{frontend: $p, backend: 8080}]) { start } } }",
        s=sid,
        p=port,
    )
    assert data["host"]["tunnel"]["start"]
    assert len((await _get(f"http://127.0.0.1:{port}/")).strip()) == 36
    await sessions.end(client.session.token)
    assert _refused(port), "the session's end left the tunnel listening"
    assert client.engine.solver.services.instances() == []


async def test_privileged_host_ports_need_a_root_owner(
    engine: EngineCore, sessions: SessionRegistry, tmp_path: Path, busybox_ref: str
) -> None:
    user = Client(engine, sessions.create(tmp_path, {}, owner=HostUser.of_uid(1000)))
    sid = await user.httpd(busybox_ref)
    error = await user.error(
        "query($s: ID!) { host { tunnel(service: $s, ports: [{frontend: 80, backend: 8080}])"
        " { id } } }",
        s=sid,
    )
    assert isinstance(error, PortForwardError) and "privileged" in str(error)
    error = await user.error(
        "query($s: ID!) { loadServiceFromID(id: $s) { up(ports: [{frontend: 443, backend: 8080}])"
        " } }",
        s=sid,
    )
    assert isinstance(error, PortForwardError)


async def test_bad_port_mappings_are_refused_with_the_fix(client: Client, busybox_ref: str) -> None:
    error = await client.error("{ host { service(ports: []) { id } } }")
    assert isinstance(error, PortForwardError) and "at least one port" in str(error)
    error = await client.error("{ host { service(ports: [{backend: 70000}]) { id } } }")
    assert isinstance(error, PortForwardError) and "1..65535" in str(error)
    bare = await client.data(
        "query($image: String!) { container { from(address: $image) {"
        ' asService(args: ["sleep", "60"]) { id } } } }',
        image=busybox_ref,
    )
    error = await client.error(
        "query($s: ID!) { host { tunnel(service: $s) { id } } }",
        s=bare["container"]["from"]["asService"]["id"],
    )
    assert isinstance(error, PortForwardError) and "withExposedPort" in str(error)


# --- Host.service -------------------------------------------------------------------------


async def test_host_service_is_reached_from_a_container(
    client: Client, busybox_ref: str, host_server: int
) -> None:
    data = await client.data(
        "query($p: Int!) { host { service(ports: [{frontend: 80, backend: $p}]) {"
        " id hostname endpoint ports { port protocol } } } }",
        p=host_server,
    )
    svc = data["host"]["service"]
    assert svc["endpoint"] == f"{svc['hostname']}:80"
    assert svc["ports"] == [{"port": 80, "protocol": "TCP"}]
    out = await client.data(
        "query($image: String!, $svc: ID!, $host: String!) { container {"
        ' from(address: $image) { withServiceBinding(alias: "devdb", service: $svc) {'
        ' withExec(args: ["sh", "-c", "wget -qO- http://devdb/a; echo; wget -qO- http://$0/b",'
        " $host]) { stdout } } } } }",
        image=busybox_ref,
        svc=svc["id"],
        host=svc["hostname"],
    )
    stdout = out["container"]["from"]["withServiceBinding"]["withExec"]["stdout"]
    assert stdout.splitlines() == ["host says GET /a HTTP/1.1", "host says GET /b HTTP/1.1"]


async def test_host_service_frontend_defaults_to_the_backend(
    client: Client, busybox_ref: str, host_server: int
) -> None:
    data = await client.data(
        "query($p: Int!) { host { service(ports: [{backend: $p}]) { id endpoint } } }",
        p=host_server,
    )
    svc = data["host"]["service"]
    assert svc["endpoint"].endswith(f":{host_server}")
    out = await client.data(
        "query($image: String!, $svc: ID!, $url: String!) { container {"
        ' from(address: $image) { withServiceBinding(alias: "h", service: $svc) {'
        ' withExec(args: ["wget", "-qO-", $url]) { stdout } } } } }',
        image=busybox_ref,
        svc=svc["id"],
        url=f"http://h:{host_server}/",
    )
    assert out["container"]["from"]["withServiceBinding"]["withExec"]["stdout"].startswith(
        "host says GET /"
    )


_UDP_CLIENT = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(10)
s.sendto(b"ping", ("devdns", 5353))
print(s.recv(100).decode())
"""


async def test_host_service_relays_udp(client: Client, python_ref: str) -> None:
    server = await anyio.create_udp_socket(local_host="127.0.0.1", local_port=0)
    port = server.extra(anyio.abc.SocketAttribute.local_port)

    async def echo() -> None:
        async for data, (host, peer) in server:
            await server.sendto(b"host heard " + data, host, peer)

    async with server, anyio.create_task_group() as tg:
        tg.start_soon(echo)
        data = await client.data(
            "query($p: Int!) { host { service(ports: [{frontend: 5353, backend: $p,"
            " protocol: UDP}]) { id } } }",
            p=port,
        )
        out = await client.data(
            "query($image: String!, $svc: ID!, $code: String!) { container {"
            ' from(address: $image) { withServiceBinding(alias: "devdns", service: $svc) {'
            ' withExec(args: ["python3", "-c", $code]) { stdout } } } } }',
            image=python_ref,
            svc=data["host"]["service"]["id"],
            code=_UDP_CLIENT,
        )
        stdout = out["container"]["from"]["withServiceBinding"]["withExec"]["stdout"]
        assert stdout.strip() == "host heard ping"
        tg.cancel_scope.cancel()


async def test_a_tunnel_cannot_be_bound_into_a_container(client: Client, busybox_ref: str) -> None:
    sid = await client.httpd(busybox_ref)
    error = await client.error(
        "query($image: String!, $s: ID!) { container { from(address: $image) {"
        ' withServiceBinding(alias: "t", service: $s) { id } } } }',
        image=busybox_ref,
        s=(await client.data("query($s: ID!) { host { tunnel(service: $s) { id } } }", s=sid))[
            "host"
        ]["tunnel"]["id"],
    )
    assert isinstance(error, PortForwardError) and "127.0.0.1" in str(error)


# --- cleanup ------------------------------------------------------------------------------


async def test_nothing_is_left_behind(tmp_path: Path, busybox_ref: str, host_server: int) -> None:
    sessions = SessionRegistry()
    async with EngineCore(tmp_path / "own") as engine:
        client = Client(engine, sessions.create(tmp_path, {}))
        sid = await client.httpd(busybox_ref)
        port = _free_port()
        host_svc = await client.data(
            "query($p: Int!) { host { service(ports: [{backend: $p}]) { id start } } }",
            p=host_server,
        )
        assert host_svc["host"]["service"]["start"]
        async with anyio.create_task_group() as tg:
            await client.up_in(tg, sid, f"(ports: [{{frontend: {port}, backend: 8080}}])")
            assert await _eventually(lambda: not _refused(port), 60)
            tunnel = await client.data(
                "query($s: ID!) { host { tunnel(service: $s) { endpoint } } }", s=sid
            )
            other = int(tunnel["host"]["tunnel"]["endpoint"].rsplit(":", 1)[1])
            assert not _refused(other)
            # The engine stops with all of it running: the up request is cancelled too.
            tg.cancel_scope.cancel()
        await sessions.end_all()
    assert _refused(port) and _refused(other)
    assert await _eventually(lambda: _ours(engine) == ([], [], [])), _ours(engine)


# --- through the SDK and a real daemon ----------------------------------------------------

_SDK_UP = """
import sys, dirk
port = int(sys.argv[3])
with dirk.Connection(dirk.Config(engine=sys.argv[1])) as client:
    svc = (
        client.container().from_(sys.argv[2])
        .with_env_variable("PORT", "8080")
        .with_exposed_port(8080)
        .as_service(args=["sh", "-c", sys.argv[4]])
    )
    print("up", flush=True)
    svc.up(ports=[dirk.PortForward(frontend=port, backend=8080)])
"""


def test_sdk_service_up_lasts_until_the_program_is_killed(busybox_ref: str) -> None:
    gen = foreground_engine()
    daemon = next(gen)
    try:
        port = _free_port()
        program = subprocess.Popen(
            [sys.executable, "-c", _SDK_UP, daemon.socket_url, busybox_ref, str(port), HTTPD],
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60
            while _refused(port) and time.monotonic() < deadline and program.poll() is None:
                time.sleep(0.1)
            assert not _refused(port), program.stdout.read() if program.poll() is not None else ""
            with httpx.Client(trust_env=False, timeout=10) as http:
                assert len(http.get(f"http://127.0.0.1:{port}/").text.strip()) == 36
            assert f"tunnel started: port={port}" in daemon.log.read_text()
        finally:
            program.kill()
            program.wait()
        deadline = time.monotonic() + 10
        while not _refused(port) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _refused(port), "the tunnel outlived the program that asked for it"
    finally:
        with contextlib.suppress(StopIteration):
            next(gen)
