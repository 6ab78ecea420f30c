"""Session liveness: a session whose owner holds an attach connection ends when that drops.

The engine side runs the real `WireServer` (stand-in schema) on real sockets; the client side is
the real `SessionAttachment`, in this process or in a child process that gets SIGKILLed.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import attrs
import httpx
import pytest
from aiohttp import web

from dirk.engine.sessions import CLIENT_WENT_AWAY, SessionRegistry
from dirk.errors import ClientConnectionError, SessionAuthError
from dirk.sdk.provision import held_session
from dirk.wire.attach import attach_session
from dirk.wire.client import EngineAddress
from dirk.wire.server import WireServer

from .wire_standin import ADMIN_TOKEN, Probe, basic, standin_server

pytestmark = pytest.mark.anyio

#: A killed client must be noticed well within this (the design polls every 0.1 s).
DETECTION_LIMIT_S = 2.0


@attrs.frozen
class Served:
    server: WireServer
    probe: Probe
    port: int
    socket: Path

    @property
    def sessions(self) -> SessionRegistry:
        return self.server.sessions

    @property
    def unix(self) -> EngineAddress:
        return EngineAddress.unix(str(self.socket))


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    """The wire server on 127.0.0.1 (a free port) and on a unix socket, as the daemon serves it."""
    probe = Probe()
    server = standin_server(probe)
    runner = web.AppRunner(server.app(), shutdown_timeout=2)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    path = tmp_path / "engine.sock"
    await web.UnixSite(runner, str(path)).start()
    port = tcp._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield Served(server, probe, port, path)
    finally:
        await runner.cleanup()


async def _raw_attach(port: int, token: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """An attach by hand over TCP, returned once its first line (the engine counted it) came."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    auth = base64.b64encode(f"{token}:".encode()).decode()
    request = f"GET /sessions/{token}/attach HTTP/1.1\r\nHost: e\r\nAuthorization: Basic {auth}"
    writer.write(f"{request}\r\n\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"application/x-ndjson" in head
    chunk = await asyncio.wait_for(reader.readuntil(b"\r\n"), 5)  # chunk size
    line = await asyncio.wait_for(reader.readuntil(b"\n"), 5)
    assert line == b'{"attached":true}\n', (chunk, line)
    return reader, writer


async def _wait_gone(sessions: SessionRegistry, token: str, limit: float) -> float:
    started = time.monotonic()
    while sessions.get(token) is not None:
        if time.monotonic() - started > limit:
            pytest.fail(f"the session was not ended within {limit} s of its client going away")
        await asyncio.sleep(0.005)
    return time.monotonic() - started


async def _listed(served: Served) -> list[dict[str, Any]]:
    """GET /sessions on the unix socket (no credentials needed there)."""
    transport = httpx.AsyncHTTPTransport(uds=str(served.socket))
    async with httpx.AsyncClient(transport=transport) as http:
        answer = await http.get("http://engine/sessions")
    assert answer.status_code == 200, answer.text
    sessions: list[dict[str, Any]] = answer.json()["sessions"]
    return sessions


# --- the registry ----------------------------------------------------------------------------


async def test_last_detach_ends_the_session_and_runs_its_cleanups(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "dirk.engine.sessions")
    registry = SessionRegistry()
    session = registry.create(Path("/w"), {})
    cleaned: list[str] = []

    async def cleanup() -> None:
        cleaned.append("stopped")

    session.add_cleanup(cleanup)
    registry.attach(session)
    registry.attach(session)
    assert registry.detach(session) is None  # one attach is left: the client still lives
    assert registry.get(session.token) is session
    ending = registry.detach(session)
    assert ending is not None
    await ending
    assert registry.get(session.token) is None and session.ended
    assert cleaned == ["stopped"]
    assert f"session {session.token[:8]} ended: {CLIENT_WENT_AWAY}" in caplog.text


async def test_detach_after_delete_does_not_end_anything_twice() -> None:
    registry = SessionRegistry()
    session = registry.create(Path("/w"), {})
    registry.attach(session)
    await registry.end(session.token)
    assert registry.detach(session) is None
    assert len(registry) == 0


# --- the engine side -------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["close", "abort"])
async def test_dropped_attach_ends_the_session_and_cancels_its_queries(
    served: Served, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "dirk.engine.sessions")
    session = served.sessions.create(Path("/w"), {})
    _, writer = await _raw_attach(served.port, session.token)
    assert [s["attached"] for s in (await _listed(served))] == [1]

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{served.port}") as http:
        query = asyncio.create_task(
            http.post(
                "/query",
                json={"query": "{ sleep(seconds: 30) }"},
                headers=basic(session.token),
                timeout=10,
            )
        )
        while served.probe.running == 0:
            await asyncio.sleep(0.005)
        if how == "close":  # FIN, as when a killed process's socket is closed
            writer.close()
        else:  # RST
            writer.transport.abort()
        took = await _wait_gone(served.sessions, session.token, DETECTION_LIMIT_S)
        answer = (await asyncio.wait_for(query, 5)).json()
    assert "session ended" in answer["errors"][0]["message"]
    assert served.probe.cancelled == 1
    assert f"ended: {CLIENT_WENT_AWAY}" in caplog.text
    print(f"\ndropped attach ({how}) noticed in {took * 1000:.0f} ms")
    assert took < 0.5


async def test_session_that_never_attached_is_left_alone(served: Served) -> None:
    plain = served.sessions.create(Path("/plain"), {})
    held = served.sessions.create(Path("/held"), {})
    _, writer = await _raw_attach(served.port, held.token)
    writer.close()
    await _wait_gone(served.sessions, held.token, DETECTION_LIMIT_S)
    await asyncio.sleep(0.5)  # several checks of the watcher
    assert served.sessions.get(plain.token) is plain and not plain.ended
    assert [s["attached"] for s in (await _listed(served))] == [0]


async def test_one_of_two_attaches_dropping_keeps_the_session(served: Served) -> None:
    session = served.sessions.create(Path("/w"), {})
    _, first = await _raw_attach(served.port, session.token)
    _, second = await _raw_attach(served.port, session.token)
    first.close()
    await asyncio.sleep(0.5)
    assert served.sessions.get(session.token) is session
    second.close()
    await _wait_gone(served.sessions, session.token, DETECTION_LIMIT_S)


async def test_delete_ends_the_attach_stream(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "dirk.engine.sessions")
    session = served.sessions.create(Path("/w"), {})
    reader, writer = await _raw_attach(served.port, session.token)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{served.port}") as http:
        answer = await http.delete(f"/sessions/{session.token}", headers=basic(session.token))
    assert answer.status_code == 200
    rest = await asyncio.wait_for(reader.read(), 2)  # the engine closes the stream
    assert b'{"ended":true}\n' in rest
    writer.close()
    assert "ended: its client ended it" in caplog.text
    assert CLIENT_WENT_AWAY not in caplog.text


async def test_attach_needs_the_session_token_or_the_admin_token(served: Served) -> None:
    mine = served.sessions.create(Path("/a"), {})
    other = served.sessions.create(Path("/b"), {})
    url = f"http://127.0.0.1:{served.port}/sessions/{mine.token}/attach"
    async with httpx.AsyncClient() as http:
        for headers in ({}, basic(other.token), {"Authorization": "Bearer wrong"}):
            answer = await http.get(url, headers=headers)
            assert answer.status_code == 401, headers
            assert "unknown session token" in answer.json()["errors"][0]["message"]
        async with http.stream(
            "GET", url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        ) as answer:
            assert answer.status_code == 200
            assert await anext(answer.aiter_lines()) == '{"attached":true}'


async def test_session_list_needs_the_socket_or_the_admin_token(served: Served) -> None:
    session = served.sessions.create(Path("/w"), {"k": "v"})
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{served.port}") as http:
        assert (await http.get("/sessions")).status_code == 401
        listed = await http.get("/sessions", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    [entry] = listed.json()["sessions"]
    assert entry["id"] == session.token[:8] and session.token not in listed.text
    assert (entry["workdir"], entry["labels"], entry["running"]) == ("/w", {"k": "v"}, 0)
    assert (await _listed(served)) == listed.json()["sessions"]


# --- the client side -------------------------------------------------------------------------


async def test_held_session_ends_by_delete_then_drops_its_attach(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "dirk.engine.sessions")
    async with held_session("/w", {}, engine=f"unix://{served.socket}", env={}) as info:
        session = served.sessions.get(info.token)
        assert session is not None and session.attached == 1
    assert served.sessions.get(info.token) is None
    assert "ended: its client ended it" in caplog.text
    assert CLIENT_WENT_AWAY not in caplog.text
    await asyncio.sleep(0.2)
    assert not [t for t in threading.enumerate() if t.name.startswith("dirk-attach-")]


async def test_closing_an_attachment_without_delete_ends_the_session(served: Served) -> None:
    session = served.sessions.create(Path("/w"), {})
    attachment = await attach_session(served.unix, session.token)
    assert attachment.alive and session.attached == 1
    attachment.close()
    await _wait_gone(served.sessions, session.token, DETECTION_LIMIT_S)
    assert not attachment.alive


async def test_attaching_to_an_unknown_session_is_refused_clearly(served: Served) -> None:
    with pytest.raises(SessionAuthError, match="refused to attach to the session"):
        await attach_session(served.unix, "no-such-token")


@pytest.fixture
def thread_errors() -> Iterator[list[threading.ExceptHookArgs]]:
    seen: list[threading.ExceptHookArgs] = []
    old, threading.excepthook = threading.excepthook, seen.append
    yield seen
    threading.excepthook = old


async def test_engine_going_away_ends_the_attach_quietly(
    tmp_path: Path, thread_errors: list[threading.ExceptHookArgs]
) -> None:
    server = standin_server()
    runner = web.AppRunner(server.app(), shutdown_timeout=2)
    await runner.setup()
    path = tmp_path / "engine.sock"
    await web.UnixSite(runner, str(path)).start()
    session = server.sessions.create(Path("/w"), {})
    attachment = await attach_session(EngineAddress.unix(str(path)), session.token)
    await runner.cleanup()  # the engine stops (or restarts): its sessions end
    deadline = time.monotonic() + 2
    while attachment.alive and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert not attachment.alive
    attachment.close()
    assert thread_errors == []


KILLED_CLIENT = textwrap.dedent(
    """
    import sys, anyio
    from dirk.wire.attach import attach_session
    from dirk.wire.client import EngineAddress

    async def main():
        await attach_session(EngineAddress.unix(sys.argv[1]), sys.argv[2])
        print("attached", flush=True)
        await anyio.sleep(60)

    anyio.run(main)
    """
)


async def test_sigkilled_client_process_is_noticed_fast(served: Served) -> None:
    session = served.sessions.create(Path("/w"), {})
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        KILLED_CLIENT,
        str(served.socket),
        session.token,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert proc.stdout is not None
    try:
        assert await asyncio.wait_for(proc.stdout.readline(), 20) == b"attached\n"
        assert session.attached == 1
        killed = time.monotonic()
        proc.send_signal(signal.SIGKILL)
        await _wait_gone(served.sessions, session.token, DETECTION_LIMIT_S)
        took = time.monotonic() - killed
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    print(f"\nSIGKILLed client noticed in {took * 1000:.0f} ms")
    assert took < 0.5


async def test_waiting_for_a_mute_engine_is_cancellable(tmp_path: Path) -> None:
    """An engine that accepts but never answers must not trap a program being interrupted."""
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tmp_path / "mute.sock"))
    listener.listen()
    started = time.monotonic()
    try:
        with anyio.move_on_after(0.3):
            await attach_session(EngineAddress.unix(str(tmp_path / "mute.sock")), "t")
    finally:
        listener.close()
    assert time.monotonic() - started < 2


async def test_a_mute_engine_is_reported_after_the_timeout(tmp_path: Path) -> None:
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tmp_path / "mute.sock"))
    listener.listen()
    try:
        with pytest.raises(ClientConnectionError, match=r"did not confirm .* within 0\.3 s"):
            await attach_session(EngineAddress.unix(str(tmp_path / "mute.sock")), "t", 0.3)
    finally:
        listener.close()
