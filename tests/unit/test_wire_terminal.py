"""The session's terminal over the wire: one holder, shells taking turns, the client's size
and input reaching the shell, its output and exit code reaching the client, and everything
ending when the client or the session goes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from dirk.engine.sessions import Session
from dirk.errors import ClientConnectionError, TerminalError
from dirk.solver.terminal import TerminalRequest
from dirk.wire.client import EngineAddress
from dirk.wire.server import WireServer
from dirk.wire.terminal_client import ShellExited, ShellOpened, connect_terminal
from dirk.workers.executor.pty import WindowSize

from .wire_standin import basic, standin_server

pytestmark = pytest.mark.anyio

Client = TestClient[web.Request, web.Application]
REQUEST = TerminalRequest("exec false exited with code 1", ("sh",))


@pytest.fixture
def server() -> WireServer:
    return standin_server()


@pytest.fixture
async def client(server: WireServer) -> AsyncIterator[Client]:
    async with TestClient(TestServer(server.app())) as c:
        yield c


@pytest.fixture
def session(server: WireServer) -> Session:
    return server.sessions.create(Path("/src"), {})


def _address(client: Client) -> EngineAddress:
    return EngineAddress(str(client.make_url("")).rstrip("/"))


async def _held(session: Session) -> None:
    async with asyncio.timeout(5):
        while not session.terminals.attached:
            await asyncio.sleep(0.01)


async def test_no_holder_no_terminal(session: Session) -> None:
    assert not session.terminals.attached
    with pytest.raises(TerminalError, match="no terminal is attached"):
        async with session.terminals.open(REQUEST):
            pass


async def test_a_shell_round_trip(client: Client, session: Session) -> None:
    async with connect_terminal(_address(client), session.token, on_failure=True) as conn:
        assert session.terminals.attached and session.terminals.on_failure
        events = conn.events()

        async def shell() -> int | None:
            async with session.terminals.open(REQUEST) as terminal:
                assert terminal.size == WindowSize(40, 120)
                assert await terminal.receive() == b"ls\r"
                assert await terminal.receive() == WindowSize(41, 121)
                await terminal.send(b"output")
                terminal.finish(3)
            return 3

        task = asyncio.ensure_future(shell())
        assert await anext(events) == ShellOpened(REQUEST.title, ("sh",))
        await conn.send_size(40, 120)
        await conn.send_input(b"ls\r")
        await conn.send_size(41, 121)
        assert await anext(events) == b"output"
        assert await anext(events) == ShellExited(3)
        assert await task == 3


async def test_one_holder_at_a_time(client: Client, session: Session) -> None:
    async with connect_terminal(_address(client), session.token):
        with pytest.raises(TerminalError, match="already holds"):
            async with connect_terminal(_address(client), session.token):
                pass
    await asyncio.sleep(0.1)
    assert not session.terminals.attached
    async with connect_terminal(_address(client), session.token):  # free again
        assert session.terminals.attached


async def test_a_wrong_token_gets_no_terminal(client: Client, session: Session) -> None:
    resp = await client.get(f"/sessions/{session.token}/terminal", headers=basic("wrong"))
    assert resp.status == 401


async def test_shells_take_turns(client: Client, session: Session) -> None:
    order: list[str] = []

    async def shell(name: str) -> None:
        async with session.terminals.open(TerminalRequest(name, ("sh",))) as terminal:
            order.append(f"{name} open")
            await asyncio.sleep(0.1)
            order.append(f"{name} closed")
            terminal.finish(0)

    async with connect_terminal(_address(client), session.token) as conn:
        tasks = [asyncio.ensure_future(shell(n)) for n in ("first", "second")]
        async for event in conn.events():
            if isinstance(event, ShellOpened):
                await conn.send_size(24, 80)
            if isinstance(event, ShellExited) and len(order) == 4:
                break
        await asyncio.gather(*tasks)
    assert order == ["first open", "first closed", "second open", "second closed"]


async def test_the_shell_input_ends_when_the_client_goes(client: Client, session: Session) -> None:
    received: list[object] = []

    async def shell() -> None:
        async with session.terminals.open(REQUEST) as terminal:
            received.append(await terminal.receive())

    async with connect_terminal(_address(client), session.token) as conn:
        task = asyncio.ensure_future(shell())
        assert isinstance(await anext(conn.events()), ShellOpened)
        await conn.send_size(24, 80)
        await asyncio.sleep(0.1)
    await asyncio.wait_for(task, 5)
    assert received == [None]


async def test_the_connection_ends_with_the_session(
    client: Client, server: WireServer, session: Session
) -> None:
    async with connect_terminal(_address(client), session.token) as conn:
        await _held(session)
        await server.sessions.end(session.token)
        async with asyncio.timeout(5):
            assert [e async for e in conn.events()] == []


async def test_an_unknown_session_is_a_connection_error(client: Client) -> None:
    with pytest.raises(ClientConnectionError, match="could not hold the session's terminal"):
        async with connect_terminal(_address(client), "no-such-session"):
            pass
