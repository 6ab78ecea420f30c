"""A session's event stream: the hub's records, its bound on slow viewers, the endpoint."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from dirk.engine import event_hub
from dirk.engine.event_hub import EventHub
from dirk.solver.job import StepEvent
from dirk.wire.server import WireServer

from .wire_standin import basic, standin_server

pytestmark = pytest.mark.anyio

Client = TestClient[web.Request, web.Application]
KEY = "sha256:" + "ab" * 32
INPUT = "sha256:" + "cd" * 32


def records(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.splitlines()]


async def test_step_events_become_records_with_id_state_inputs_and_times() -> None:
    hub = EventHub()
    viewer = hub.subscribe()
    hub.publish(StepEvent("queued", KEY, "go test ./...", inputs=(INPUT,), at=10.0))
    hub.publish(StepEvent("start", KEY, "go test ./...", inputs=(INPUT,), at=11.0))
    hub.publish(StepEvent("stdout", KEY, "go test ./...", b"ok  pkg\n", at=11.5))
    hub.publish(StepEvent("done", KEY, "go test ./...", duration=40.6, at=51.6))
    hub.publish(StepEvent("cached", INPUT, "from python:3.11", duration=2.5, at=52.0))
    hub.publish(StepEvent("error", INPUT, "false", b"exit code: 1", at=53.0))
    hub.publish(StepEvent("cancelled", KEY, "sleep 9", b"an input failed", at=54.0))
    got = records(viewer.take())
    step_id = "ab" * 8
    assert got == [
        {
            "type": "step",
            "id": step_id,
            "state": "queued",
            "name": "go test ./...",
            "cached": False,
            "at": 10.0,
            "inputs": ["cd" * 8],
        },
        {
            "type": "step",
            "id": step_id,
            "state": "running",
            "name": "go test ./...",
            "cached": False,
            "at": 11.0,
            "inputs": ["cd" * 8],
        },
        {"type": "output", "id": step_id, "stream": "stdout", "data": "ok  pkg\n", "at": 11.5},
        {
            "type": "step",
            "id": step_id,
            "state": "done",
            "name": "go test ./...",
            "cached": False,
            "at": 51.6,
            "duration": 40.6,
        },
        {
            "type": "step",
            "id": "cd" * 8,
            "state": "cached",
            "name": "from python:3.11",
            "cached": True,
            "at": 52.0,
            "duration": 2.5,
        },
        {
            "type": "step",
            "id": "cd" * 8,
            "state": "failed",
            "name": "false",
            "cached": False,
            "at": 53.0,
            "error": "exit code: 1",
        },
        {
            "type": "step",
            "id": step_id,
            "state": "cancelled",
            "name": "sleep 9",
            "cached": False,
            "at": 54.0,
            "reason": "an input failed",
        },
    ]


async def test_a_character_split_between_two_chunks_arrives_whole() -> None:
    hub = EventHub()
    viewer = hub.subscribe()
    data = "héllo €\n".encode()
    cut = data.index("€".encode()) + 1
    hub.publish(StepEvent("stdout", KEY, "echo", data[:cut]))
    hub.publish(StepEvent("stdout", KEY, "echo", data[cut:]))
    texts = [r["data"] for r in records(viewer.take())]
    assert "".join(texts) == "héllo €\n"
    assert all("\ufffd" not in t for t in texts)


async def test_a_slow_viewer_loses_output_counted_never_the_step_states(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(event_hub, "OUTPUT_BOUND", 2000)
    hub = EventHub()
    viewer = hub.subscribe()
    hub.publish(StepEvent("start", KEY, "yes"))
    for i in range(100):
        hub.publish(StepEvent("stdout", KEY, "yes", f"line {i}\n".encode()))
    hub.publish(StepEvent("done", KEY, "yes", duration=1.0))
    got = records(viewer.take())
    assert got[0]["type"] == "dropped"
    kept = [r for r in got if r["type"] == "output"]
    assert 0 < len(kept) < 100
    assert got[0]["lines"] == 100 - len(kept) and got[0]["events"] == 0
    assert [r["state"] for r in got if r["type"] == "step"] == ["running", "done"]
    assert viewer.take() == b""  # counted once


async def test_publishing_without_viewers_keeps_nothing() -> None:
    hub = EventHub()
    hub.publish(StepEvent("stdout", KEY, "echo", b"\xe2"))  # half a character
    viewer = hub.subscribe()
    hub.publish(StepEvent("stdout", KEY, "echo", b"ok\n"))
    assert [r["data"] for r in records(viewer.take())] == ["ok\n"]


@pytest.fixture
def server() -> WireServer:
    return standin_server()


@pytest.fixture
async def client(server: WireServer) -> AsyncIterator[Client]:
    async with TestClient(TestServer(server.app())) as c:
        yield c


async def test_the_endpoint_streams_a_sessions_events_until_it_ends(
    client: Client, server: WireServer
) -> None:
    session = server.sessions.create(workdir=Path("/"), labels={})
    refused = await client.get(f"/sessions/{session.token}/events", headers=basic("wrong"))
    assert refused.status == 401
    response = await client.get(f"/sessions/{session.token}/events", headers=basic(session.token))
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/x-ndjson"
    first = await response.content.readline()
    assert json.loads(first) == {"type": "subscribed"}
    session.events(StepEvent("start", KEY, "echo hi"))
    session.events(StepEvent("stdout", KEY, "echo hi", b"hi\n"))
    await server.sessions.end(session.token)
    rest = records(await asyncio.wait_for(response.content.read(), 5))
    assert [r["type"] for r in rest] == ["step", "output", "ended"]
    assert session.hub.subscribers == 0


async def test_a_viewer_that_goes_away_is_unsubscribed(client: Client, server: WireServer) -> None:
    session = server.sessions.create(workdir=Path("/"), labels={})
    response = await client.get(f"/sessions/{session.token}/events", headers=basic(session.token))
    await response.content.readline()
    assert session.hub.subscribers == 1
    response.close()
    for _ in range(100):
        if session.hub.subscribers == 0:
            break
        await asyncio.sleep(0.05)
    assert session.hub.subscribers == 0
    await server.sessions.end(session.token)
