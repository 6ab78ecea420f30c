"""Forwarders listening inside a container network namespace (what `Host.service` does): a
peer namespace on the bridge reaches a server on the host's loopback through it, over TCP and
UDP, and nothing is left once the forwarder is cancelled and the namespaces removed."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator

import anyio
import anyio.abc
import anyio.to_thread
import pytest

from dirk.workers.executor import network
from dirk.workers.executor.forward import Forwarder, Route, open_listeners

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


def _ours(tag: str) -> tuple[list[str], list[str]]:
    netns = [n for n in os.listdir(network.NETNS_DIR) if n.startswith(f"dirk-{tag}-")]
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    veths = [line.split()[0] for line in links.splitlines() if line.startswith(f"dk{tag}")]
    return netns, veths


def _wait_until(check: Callable[[], bool], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


@pytest.fixture
def namespaces() -> Iterator[tuple[network.Netns, network.Netns]]:
    """(service, client): two namespaces on the bridge, removed afterwards."""
    assert os.geteuid() == 0, "network namespaces need root"
    tag = f"f{os.getpid() % 100:02d}"
    network.setup_host_network()
    made = []
    try:
        for n in ("1", "2"):
            made.append(network.create_netns(f"dirk-{tag}-{n}", f"dk{tag}{n}"))
        # The bridge drops frames between containers unless their pair is allowed, as it is
        # for a container bound to a service.
        network.allow_peers(made[1].veth, [made[0].veth])
        yield made[0], made[1]
    finally:
        if len(made) == 2:
            network.forbid_peers(made[1].veth, [made[0].veth])
        for ns in made:
            network.remove_netns(ns.name)
        assert _wait_until(lambda: _ours(tag) == ([], [])), _ours(tag)


def _tcp_request(address: str, port: int) -> bytes:
    with socket.create_connection((address, port), timeout=5) as conn:
        conn.sendall(b"hello")
        conn.shutdown(socket.SHUT_WR)
        parts = []
        while chunk := conn.recv(65536):
            parts.append(chunk)
    return b"".join(parts)


def _udp_request(address: str, port: int) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(b"ping", (address, port))
        return sock.recv(65536)


async def test_a_namespace_reaches_the_host_loopback_through_a_forwarder(
    namespaces: tuple[network.Netns, network.Netns],
) -> None:
    service, client = namespaces

    async def answer(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            request = b"".join([chunk async for chunk in stream])
            await stream.send(b"host saw " + request)

    async with anyio.create_task_group() as tg:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        tg.start_soon(listener.serve, answer)
        tcp_port = listener.extra(anyio.abc.SocketAttribute.local_port)
        udp = await anyio.create_udp_socket(local_host="127.0.0.1", local_port=0)
        udp_port = udp.extra(anyio.abc.SocketAttribute.local_port)

        async def udp_echo() -> None:
            async for data, (host, port) in udp:
                await udp.sendto(b"host saw " + data, host, port)

        tg.start_soon(udp_echo)
        routes = [
            Route("tcp", "0.0.0.0", 8080, "127.0.0.1", tcp_port),
            Route("udp", "0.0.0.0", 5353, "localhost", udp_port),
        ]
        bound = await anyio.to_thread.run_sync(open_listeners, routes, service.name)
        fwd = Forwarder(bound)
        forwarding = anyio.CancelScope()
        stopped = anyio.Event()

        async def run_forwarder(*, task_status: anyio.abc.TaskStatus[None]) -> None:
            with forwarding:
                await fwd.serve(task_status=task_status)
            stopped.set()

        await tg.start(run_forwarder)

        def from_client(action: Callable[[], bytes]) -> bytes:
            return network.in_netns(client.name, action)

        tcp = await anyio.to_thread.run_sync(
            from_client, lambda: _tcp_request(service.address, 8080)
        )
        assert tcp == b"host saw hello"
        got = await anyio.to_thread.run_sync(
            from_client, lambda: _udp_request(service.address, 5353)
        )
        assert got == b"host saw ping"
        # The listener lives in the service's namespace, not on the host.
        with pytest.raises(OSError):
            await anyio.to_thread.run_sync(_tcp_request, "127.0.0.1", 8080)
        forwarding.cancel()
        await stopped.wait()
        with pytest.raises(ConnectionRefusedError):
            await anyio.to_thread.run_sync(from_client, lambda: _tcp_request(service.address, 8080))
        assert all(b.sock.fileno() == -1 for b in bound)
        tg.cancel_scope.cancel()
