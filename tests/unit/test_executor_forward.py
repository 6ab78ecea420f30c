"""The port forwarders against real sockets on the loopback: TCP relays (data both ways,
half-close, resets, unreachable targets, many connections), UDP relays, and cleanup."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
import anyio.abc
import pytest

from dirk.errors import PortForwardError
from dirk.workers.executor import forward
from dirk.workers.executor.forward import Forwarder, Route, check_host_port, open_listeners

pytestmark = pytest.mark.anyio

Handler = Callable[[anyio.abc.SocketStream], Awaitable[None]]


async def _server(handler: Handler, tg: anyio.abc.TaskGroup) -> int:
    """A TCP server on 127.0.0.1 running `handler` per connection; returns its port."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    tg.start_soon(listener.serve, handler)
    port: int = listener.extra(anyio.abc.SocketAttribute.local_port)
    return port


async def _echo(stream: anyio.abc.SocketStream) -> None:
    async with stream:
        async for chunk in stream:
            await stream.send(chunk)


async def _forward(
    tg: anyio.abc.TaskGroup, target_port: int, protocol: forward.Protocol = "tcp"
) -> tuple[Forwarder, int]:
    route = Route(protocol, "127.0.0.1", 0, "127.0.0.1", target_port)
    fwd = Forwarder(open_listeners([route]))
    await tg.start(fwd.serve)
    return fwd, fwd.bound[0].port


@contextlib.asynccontextmanager
async def running() -> AsyncIterator[anyio.abc.TaskGroup]:
    """A task group for servers and forwarders, cancelled when the test's block ends."""
    async with anyio.create_task_group() as group:
        yield group
        group.cancel_scope.cancel()


async def _read_all(stream: anyio.abc.SocketStream) -> bytes:
    parts = []
    async for chunk in stream:
        parts.append(chunk)
    return b"".join(parts)


async def test_tcp_relays_both_ways_intact() -> None:
    async with running() as tg:
        _, port = await _forward(tg, await _server(_echo, tg))
        payload = os.urandom(4 * 1024 * 1024)
        async with await anyio.connect_tcp("127.0.0.1", port) as client:

            async def send() -> None:
                await client.send(payload)
                await client.send_eof()

            async with anyio.create_task_group() as inner:
                inner.start_soon(send)
                echoed = await _read_all(client)
        assert echoed == payload


async def test_tcp_half_close_still_gets_the_answer() -> None:
    async with running() as tg:

        async def answer_after_eof(stream: anyio.abc.SocketStream) -> None:
            async with stream:
                request = await _read_all(stream)  # only ends once the client shut its side
                await stream.send(b"got " + request)

        _, port = await _forward(tg, await _server(answer_after_eof, tg))
        async with await anyio.connect_tcp("127.0.0.1", port) as client:
            await client.send(b"ping")
            await client.send_eof()
            assert await _read_all(client) == b"got ping"


async def test_unreachable_target_resets_the_client() -> None:
    async with running() as tg:
        with socket.socket() as probe:  # a port nothing listens on
            probe.bind(("127.0.0.1", 0))
            dead = probe.getsockname()[1]
        _, port = await _forward(tg, dead)
        async with await anyio.connect_tcp("127.0.0.1", port) as client:
            with pytest.raises((anyio.BrokenResourceError, anyio.EndOfStream)):
                await client.receive()


async def test_a_reset_target_resets_the_client() -> None:
    async with running() as tg:

        async def reset(stream: anyio.abc.SocketStream) -> None:
            await stream.receive()
            raw = stream.extra(anyio.abc.SocketAttribute.raw_socket)
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            await stream.aclose()

        _, port = await _forward(tg, await _server(reset, tg))
        async with await anyio.connect_tcp("127.0.0.1", port) as client:
            await client.send(b"x")
            with pytest.raises(anyio.BrokenResourceError) as info:
                await client.receive()
        assert isinstance(info.value.__cause__, ConnectionResetError)


async def test_many_connections_at_once() -> None:
    async with running() as tg:
        _, port = await _forward(tg, await _server(_echo, tg))
        answers: dict[int, bytes] = {}

        async def one(i: int) -> None:
            async with await anyio.connect_tcp("127.0.0.1", port) as client:
                await client.send(b"%d" % i)
                await client.send_eof()
                answers[i] = await _read_all(client)

        async with anyio.create_task_group() as inner:
            for i in range(100):
                inner.start_soon(one, i)
        assert answers == {i: b"%d" % i for i in range(100)}


async def test_cancel_closes_listener_and_connections() -> None:
    async with anyio.create_task_group() as servers:
        target = await _server(_echo, servers)
        with anyio.CancelScope() as scope:
            route = Route("tcp", "127.0.0.1", 0, "127.0.0.1", target)
            fwd = Forwarder(open_listeners([route]))
            async with anyio.create_task_group() as tg:
                await tg.start(fwd.serve)
                port = fwd.bound[0].port
                client = await anyio.connect_tcp("127.0.0.1", port)
                await client.send(b"hi")
                assert await client.receive() == b"hi"
                assert fwd.active == 1
                scope.cancel()
        assert fwd.bound[0].sock.fileno() == -1
        with pytest.raises((anyio.BrokenResourceError, anyio.EndOfStream)):
            await client.receive()  # the relayed connection was closed too
        await client.aclose()
        with pytest.raises(OSError):  # refused: nothing listens any more
            await anyio.connect_tcp("127.0.0.1", port)
        servers.cancel_scope.cancel()


async def test_udp_relays_datagrams_per_peer() -> None:
    async with running() as tg:
        server = await anyio.create_udp_socket(local_host="127.0.0.1", local_port=0)

        async def echo_udp() -> None:
            async with server:
                async for data, (host, port) in server:
                    await server.sendto(b"echo " + data, host, port)

        tg.start_soon(echo_udp)
        fwd, port = await _forward(tg, server.extra(anyio.abc.SocketAttribute.local_port), "udp")
        a = await anyio.create_connected_udp_socket("127.0.0.1", port)
        b = await anyio.create_connected_udp_socket("127.0.0.1", port)
        async with a, b:
            await a.send(b"from a")
            await b.send(b"from b")
            with anyio.fail_after(5):
                assert await a.receive() == b"echo from a"
                assert await b.receive() == b"echo from b"
        assert fwd.active == 2  # one target socket per peer


async def test_udp_forgets_idle_peers(monkeypatch: pytest.MonkeyPatch) -> None:
    async with running() as tg:
        monkeypatch.setattr(forward, "UDP_IDLE", 0.2)
        server = await anyio.create_udp_socket(local_host="127.0.0.1", local_port=0)
        tg.start_soon(server.receive)
        fwd, port = await _forward(tg, server.extra(anyio.abc.SocketAttribute.local_port), "udp")
        async with await anyio.create_connected_udp_socket("127.0.0.1", port) as client:
            await client.send(b"x")
            with anyio.fail_after(5):
                while fwd.active == 0:
                    await anyio.sleep(0.01)
                while fwd.active:
                    await anyio.sleep(0.05)
        await server.aclose()


def test_a_port_in_use_is_refused_with_the_fix() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortForwardError, match=r"already in use.*random: true"):
            open_listeners([Route("tcp", "127.0.0.1", port, "127.0.0.1", 1)])


def test_all_or_none_when_one_route_fails() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        before = len(os.listdir("/proc/self/fd"))
        with pytest.raises(PortForwardError):
            open_listeners(
                [
                    Route("tcp", "127.0.0.1", 0, "127.0.0.1", 1),
                    Route("tcp", "127.0.0.1", port, "127.0.0.1", 1),
                ]
            )
        assert len(os.listdir("/proc/self/fd")) == before


def test_privileged_host_ports_need_a_root_owner() -> None:
    with pytest.raises(PortForwardError, match=r"privileged.*uid 1000.*1024"):
        check_host_port(80, 1000)
    check_host_port(80, 0)
    check_host_port(1024, 1000)
    check_host_port(0, 1000)  # a free port the kernel picks is never privileged
    with pytest.raises(PortForwardError, match="out of range"):
        check_host_port(70000, 0)
