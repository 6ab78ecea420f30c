"""Sessions over the wire: who may open them, and what ending one does."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from dirk.wire.server import WireServer

from .wire_standin import ADMIN_TOKEN, Probe, basic, standin_server

pytestmark = pytest.mark.anyio

Client = TestClient[web.Request, web.Application]


@pytest.fixture
def probe() -> Probe:
    return Probe()


@pytest.fixture
def server(probe: Probe) -> WireServer:
    return standin_server(probe)


@pytest.fixture
async def client(server: WireServer) -> AsyncIterator[Client]:
    async with TestClient(TestServer(server.app())) as c:
        yield c


@pytest.fixture
async def unix_client(server: WireServer, tmp_path: Path) -> AsyncIterator[aiohttp.ClientSession]:
    """A client of the same app served on a unix socket, as the daemon does."""
    runner = web.AppRunner(server.app())
    await runner.setup()
    path = tmp_path / "engine.sock"
    await web.UnixSite(runner, str(path)).start()
    async with aiohttp.ClientSession(
        base_url="http://engine", connector=aiohttp.UnixConnector(path=str(path))
    ) as session:
        yield session
    await runner.cleanup()


NEW_SESSION = {"workdir": "/src/app", "labels": {"dagger.io/sdk.name": "python"}}


async def test_tcp_session_creation_needs_admin_token(client: Client) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, basic(ADMIN_TOKEN)):
        resp = await client.post("/sessions", json=NEW_SESSION, headers=headers)
        assert resp.status == 401, headers
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        body = await resp.json()
        assert body["data"] is None and "admin token" in body["errors"][0]["message"]


async def test_tcp_session_creation_with_admin_token(client: Client, server: WireServer) -> None:
    resp = await client.post(
        "/sessions", json=NEW_SESSION, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert resp.status == 200
    body = await resp.json()
    assert set(body) == {"token", "port", "version"} and body["port"] == 4242
    assert body["version"] == server.version  # clients compare it with their own
    assert len(body["token"]) >= 43  # token_urlsafe(32)
    session = server.sessions.get(body["token"])
    assert session is not None
    assert session.workdir == Path("/src/app")
    assert session.labels == {"dagger.io/sdk.name": "python"}


async def test_unix_socket_creates_sessions_without_credentials(
    unix_client: aiohttp.ClientSession,
) -> None:
    resp = await unix_client.post("/sessions", json=NEW_SESSION)
    assert resp.status == 200
    token = (await resp.json())["token"]
    resp = await unix_client.post("/query", json={"query": "{ workdir }"}, headers=basic(token))
    assert await resp.json() == {"data": {"workdir": "/src/app"}}
    resp = await unix_client.post("/query", json={"query": "{ workdir }"})
    assert resp.status == 401  # the socket opens sessions; queries still need a token


@pytest.mark.parametrize(
    "body",
    [
        {"workdir": "relative/dir"},
        {"labels": {}},
        {"workdir": "/x", "labels": {"a": 1}},
        {"workdir": "/x", "labels": ["a"]},
    ],
)
async def test_bad_session_requests_are_400(
    unix_client: aiohttp.ClientSession, body: dict[str, Any]
) -> None:
    resp = await unix_client.post("/sessions", json=body)
    assert resp.status == 400
    assert (await resp.json())["errors"][0]["message"]


async def test_delete_session_invalidates_its_token(client: Client, server: WireServer) -> None:
    mine = server.sessions.create(Path("/a"), {})
    other = server.sessions.create(Path("/b"), {})
    resp = await client.delete(f"/sessions/{mine.token}", headers=basic(other.token))
    assert resp.status == 401  # one session cannot end another
    resp = await client.delete(f"/sessions/{mine.token}", headers=basic(mine.token))
    assert resp.status == 200
    assert server.sessions.get(mine.token) is None
    resp = await client.post("/query", json={"query": "{ version }"}, headers=basic(mine.token))
    assert resp.status == 401
    resp = await client.post("/query", json={"query": "{ version }"}, headers=basic(other.token))
    assert resp.status == 200


async def test_ending_a_session_cancels_its_running_queries_and_runs_cleanups(
    client: Client, server: WireServer, probe: Probe
) -> None:
    session = server.sessions.create(Path("/a"), {})
    session.state["ids"] = {"x": 1}
    cleaned: list[str] = []

    async def cleanup() -> None:
        cleaned.append("service stopped")

    session.add_cleanup(cleanup)
    query = asyncio.create_task(
        client.post(
            "/query", json={"query": "{ sleep(seconds: 30) }"}, headers=basic(session.token)
        )
    )
    while probe.running == 0:
        await asyncio.sleep(0.01)
    resp = await client.delete(f"/sessions/{session.token}", headers=basic(session.token))
    assert resp.status == 200
    answer = await asyncio.wait_for(query, 5)
    assert answer.status == 200
    body = await answer.json()
    assert body["data"] is None and "session ended" in body["errors"][0]["message"]
    assert probe.cancelled == 1
    assert cleaned == ["service stopped"]
    assert session.state == {} and session.ended


async def test_a_query_whose_client_went_away_is_cancelled(
    server: WireServer, probe: Probe
) -> None:
    # As the daemon serves (aiohttp's AppRunner does not cancel handlers; its TestServer does).
    runner = web.AppRunner(server.app(), shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        session = server.sessions.create(Path("/a"), {})
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            query = asyncio.create_task(
                http.post(
                    "/query",
                    json={"query": "{ sleep(seconds: 30) }"},
                    headers=basic(session.token),
                )
            )
            while probe.running == 0:
                await asyncio.sleep(0.01)
            query.cancel()  # the client gives up: its connection closes
            with contextlib.suppress(asyncio.CancelledError):
                await query
            for _ in range(300):
                if probe.cancelled:
                    break
                await asyncio.sleep(0.01)
            assert probe.cancelled == 1 and probe.running == 0
            assert not session.ended and session.running == 0
            # The session goes on: its next query is answered.
            resp = await http.post(
                "/query", json={"query": "{ version }"}, headers=basic(session.token)
            )
            assert resp.status == 200
    finally:
        await runner.cleanup()


async def test_shutdown_ends_sessions_and_answers_running_queries(
    server: WireServer, probe: Probe
) -> None:
    session = server.sessions.create(Path("/a"), {})
    test_server = TestServer(server.app())
    async with TestClient(test_server) as client:
        query = asyncio.create_task(
            client.post(
                "/query", json={"query": "{ sleep(seconds: 30) }"}, headers=basic(session.token)
            )
        )
        while probe.running == 0:
            await asyncio.sleep(0.01)
        await test_server.runner.cleanup()  # type: ignore[union-attr]
        answer = await asyncio.wait_for(query, 5)
        assert "session ended" in (await answer.json())["errors"][0]["message"]
    assert len(server.sessions) == 0


async def test_the_clients_environment_stays_in_the_sessions_memory(
    client: Client, server: WireServer
) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    body = {**NEW_SESSION, "env": {"API_TOKEN": "t0ps3cret"}}
    resp = await client.post("/sessions", json=body, headers=admin)
    assert resp.status == 200
    token = (await resp.json())["token"]
    session = server.sessions.get(token)
    assert session is not None and session.client_env == {"API_TOKEN": "t0ps3cret"}
    assert "t0ps3cret" not in repr(session)
    listed = await client.get("/sessions", headers=admin)
    assert "t0ps3cret" not in await listed.text()
    resp = await client.post("/sessions", json={**NEW_SESSION, "env": ["x"]}, headers=admin)
    assert resp.status == 400
    assert '"env" must be an object' in (await resp.json())["errors"][0]["message"]
