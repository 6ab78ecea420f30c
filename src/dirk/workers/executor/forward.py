"""Port forwarders: relays from listening sockets to a target address, between the host and
the containers' network.

One module serves every direction: `Host.tunnel`/`Service.up` listen on the host's loopback
and send to a container's 10.89.x.y address; `Host.service` listens inside a network
namespace of its own (a socket keeps the namespace it was created in, so only its creation
needs a thread that joined the namespace) and sends to an address of the host. The engine's
event loop then serves every socket, whatever namespace it belongs to.

TCP: one task per connection, two pumps; an end of stream on one side becomes a half-close
(`shutdown(SHUT_WR)`) of the other, so request/response protocols that close their sending side
first still get their answer; a reset on one side resets the other. A target that cannot be
reached resets the accepted connection, which the client sees as refused or reset.
UDP: one connected socket towards the target per peer address, answers sent back from the
listening socket, a peer forgotten after `UDP_IDLE` seconds without traffic.
Cancelling `Forwarder.serve` closes the listeners and every connection (nothing left behind).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import os
import socket
import struct
from collections.abc import Sequence
from typing import Any, Literal

import anyio
import anyio.abc
import anyio.lowlevel
import attrs

from dirk.errors import PortForwardError
from dirk.workers.executor.network import in_netns

log = logging.getLogger(__name__)

Protocol = Literal["tcp", "udp"]
#: Listeners on the host bind here unless asked otherwise: never reachable from elsewhere.
LOOPBACK = "127.0.0.1"
#: Connections relayed at once per listener; more wait in the kernel's backlog.
MAX_CONNECTIONS = 1024
#: Peers of a UDP listener tracked at once; datagrams of further peers are dropped.
MAX_UDP_PEERS = 256
#: Seconds a UDP peer is remembered without traffic (conntrack's default for UDP is 30-120).
UDP_IDLE = 60.0
#: Seconds to connect to a target before the client's connection is reset.
CONNECT_TIMEOUT = 10.0
_CHUNK = 256 * 1024
_AddrInfo = tuple[socket.AddressFamily, socket.SocketKind, int, str, tuple[Any, ...]]


@attrs.frozen
class Route:
    """One forward: listen on `listen_host:listen_port` (0 = a free port the kernel picks),
    send to `target_host:target_port`."""

    protocol: Protocol
    listen_host: str
    listen_port: int
    target_host: str
    target_port: int


@attrs.frozen
class Bound:
    """A route whose listening socket is open: `port` is the port it really has."""

    route: Route
    sock: socket.socket = attrs.field(eq=False, repr=False)

    @property
    def port(self) -> int:
        port: int = self.sock.getsockname()[1]
        return port


def check_host_port(port: int, owner_uid: int) -> None:
    """Refuse a host port a session's owner could not listen on themselves: ports below 1024
    need root (the engine is root; its sessions have their owner's rights, no more)."""
    if not 0 <= port <= 65535:
        raise PortForwardError(f"port {port} is out of range: give a port from 1 to 65535")
    if 0 < port < 1024 and owner_uid != 0:
        raise PortForwardError(
            f"host port {port} is privileged (below 1024) and this session's owner (uid "
            f"{owner_uid}) is not root: forward to a port of 1024 or above, or let the engine "
            "pick a free one (random: true, or frontend 0)"
        )


def _open(route: Route) -> socket.socket:
    """The listening socket of `route`, in the calling thread's network namespace."""
    family = socket.AF_INET6 if ":" in route.listen_host else socket.AF_INET
    kind = socket.SOCK_STREAM if route.protocol == "tcp" else socket.SOCK_DGRAM
    sock = socket.socket(family, kind)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((route.listen_host, route.listen_port))
        if kind == socket.SOCK_STREAM:
            sock.listen(128)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        where = f"{route.listen_host}:{route.listen_port}/{route.protocol}"
        if exc.errno == errno.EADDRINUSE:
            raise PortForwardError(
                f"cannot listen on {where}: the port is already in use; choose another "
                "frontend port, or let the engine pick a free one (random: true, or frontend 0)"
            ) from exc
        raise PortForwardError(f"cannot listen on {where}: {exc.strerror}") from exc
    return sock


def open_listeners(routes: Sequence[Route], netns: str | None = None) -> list[Bound]:
    """Bind every route's socket (blocking: call from a thread), inside network namespace
    `netns` (a name under /run/netns) if given, else in the caller's. All or none: on any
    failure the sockets already opened are closed."""

    def open_all() -> list[Bound]:
        bound: list[Bound] = []
        try:
            for route in routes:
                bound.append(Bound(route, _open(route)))
        except BaseException:
            close_all(bound)
            raise
        return bound

    return open_all() if netns is None else in_netns(netns, open_all)


def close_all(bound: Sequence[Bound]) -> None:
    for b in bound:
        b.sock.close()


class Forwarder:
    """Relays what arrives on each bound socket to its route's target, until cancelled.

    It owns the sockets: `serve` closes them when it ends, and `close` closes them if `serve`
    never ran."""

    def __init__(self, bound: Sequence[Bound]) -> None:
        self.bound = list(bound)
        #: Connections (TCP) and peers (UDP) being relayed now, for tests and stats.
        self.active = 0

    def close(self) -> None:
        close_all(self.bound)

    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            async with anyio.create_task_group() as tg:
                for b in self.bound:
                    if b.route.protocol == "tcp":
                        tg.start_soon(self._serve_tcp, b.sock, b.route)
                    else:
                        udp = await anyio.abc.UDPSocket.from_socket(b.sock)
                        tg.start_soon(_serve_udp, self, udp, b.route)
                task_status.started()
        finally:
            self.close()

    async def _serve_tcp(self, listener: socket.socket, route: Route) -> None:
        limiter = anyio.Semaphore(MAX_CONNECTIONS)
        async with anyio.create_task_group() as tg:
            while True:
                await limiter.acquire()
                try:
                    client = await _accept(listener)
                except OSError as exc:  # EMFILE and the like: wait, do not spin
                    limiter.release()
                    log.warning("accepting on %s failed: %s", _where(route), exc)
                    await anyio.sleep(0.1)
                    continue
                except BaseException:
                    limiter.release()
                    raise
                tg.start_soon(self._relay_tcp, client, route, limiter)

    async def _relay_tcp(
        self, client: socket.socket, route: Route, limiter: anyio.Semaphore
    ) -> None:
        self.active += 1
        try:
            with client:
                try:
                    with anyio.fail_after(CONNECT_TIMEOUT):
                        target = await _connect(route.target_host, route.target_port)
                except (OSError, TimeoutError) as exc:
                    log.info("forward %s: target unreachable: %s", _where(route), exc)
                    _reset(client)
                    return
                with target:
                    await _splice(client, target)
        finally:
            self.active -= 1
            limiter.release()


def _where(route: Route) -> str:
    return (
        f"{route.listen_host}:{route.listen_port}/{route.protocol} -> "
        f"{route.target_host}:{route.target_port}"
    )


# --- TCP -------------------------------------------------------------------------------------
# Raw non-blocking sockets and anyio's readiness waits: measured twice the throughput and a
# third less latency than anyio's transport-based streams (see bench/forward.py).


def _nodelay(sock: socket.socket) -> socket.socket:
    sock.setblocking(False)
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


async def _accept(listener: socket.socket) -> socket.socket:
    while True:
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            await anyio.wait_readable(listener)
            continue
        return _nodelay(conn)


async def _connect(host: str, port: int) -> socket.socket:
    """A connected socket to host:port, trying each of the name's addresses in turn."""
    infos = await _addresses(host, port, socket.SOCK_STREAM)
    failure: OSError = OSError(errno.EHOSTUNREACH, f"{host} has no address")
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            try:
                sock.connect(address)
            except BlockingIOError:
                await anyio.wait_writable(sock)
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise OSError(err, os.strerror(err)) from None
            return _nodelay(sock)
        except OSError as exc:
            sock.close()
            failure = exc
        except BaseException:
            sock.close()
            raise
    raise failure


async def _addresses(host: str, port: int, kind: int) -> list[_AddrInfo]:
    """getaddrinfo's answers; an address literal needs no lookup (a lookup is a thread hop)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return list(await anyio.getaddrinfo(host, port, type=kind))
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    return [(family, socket.SocketKind(kind), 0, "", (str(ip), port))]


def _reset(sock: socket.socket) -> None:
    """Make the coming close send a RST (SO_LINGER 0) rather than a FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class _Reset(Exception):
    """One side of a relayed connection failed (reset, broken): reset the other."""


#: Chunks relayed in a row without waiting before the pump lets other tasks run.
_BURST = 16


async def _pump(src: socket.socket, dst: socket.socket) -> None:
    """Copy src to dst until src's end of stream, then half-close dst."""
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    burst = 0
    try:
        while True:
            try:
                n = src.recv_into(buf)
            except BlockingIOError:
                burst = 0
                await anyio.wait_readable(src)
                continue
            if n == 0:
                break
            sent = 0
            while sent < n:
                try:
                    sent += dst.send(view[sent:n])
                except BlockingIOError:
                    burst = 0
                    await anyio.wait_writable(dst)
            burst += 1
            if burst >= _BURST:
                burst = 0
                await anyio.lowlevel.checkpoint()
        dst.shutdown(socket.SHUT_WR)
    except OSError as exc:
        raise _Reset from exc


async def _splice(a: socket.socket, b: socket.socket) -> None:
    """Relay both ways until both sides ended their streams, or one failed (then reset both)."""
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_pump, a, b)
            tg.start_soon(_pump, b, a)
    except* _Reset:
        _reset(a)
        _reset(b)


# --- UDP -------------------------------------------------------------------------------------


@attrs.define(eq=False)
class _Peer:
    sock: anyio.abc.ConnectedUDPSocket
    last: float


async def _udp_target(route: Route) -> anyio.abc.ConnectedUDPSocket:
    """A connected UDP socket towards the route's target; a name resolves to its first IPv4
    address if it has one (UDP cannot try the families in turn, as TCP connects do)."""
    infos = await _addresses(route.target_host, route.target_port, socket.SOCK_DGRAM)
    if not infos:
        raise OSError(errno.EHOSTUNREACH, f"{route.target_host} has no address")
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    address = str(infos[0][4][0])
    if infos[0][0] == socket.AF_INET:
        return await anyio.create_connected_udp_socket(
            address, route.target_port, family=socket.AF_INET
        )
    return await anyio.create_connected_udp_socket(
        address, route.target_port, family=socket.AF_INET6
    )


async def _serve_udp(forwarder: Forwarder, udp: anyio.abc.UDPSocket, route: Route) -> None:
    peers: dict[tuple[str, int], _Peer] = {}

    async def back(addr: tuple[str, int], peer: _Peer) -> None:
        """Answers of the target to `addr`, until the peer has been idle for UDP_IDLE."""
        forwarder.active += 1
        try:
            async with peer.sock:
                while True:
                    left = peer.last + UDP_IDLE - anyio.current_time()
                    if left <= 0:
                        return
                    with anyio.move_on_after(left):
                        try:
                            data = await peer.sock.receive()
                        except OSError:  # ICMP unreachable from an earlier datagram
                            continue
                        peer.last = anyio.current_time()
                        with contextlib.suppress(OSError):
                            await udp.sendto(data, *addr)
        finally:
            peers.pop(addr, None)
            forwarder.active -= 1

    async with udp, anyio.create_task_group() as tg:
        while True:
            data, (host, port) = await udp.receive()
            addr = (host, port)
            peer = peers.get(addr)
            if peer is None:
                if len(peers) >= MAX_UDP_PEERS:
                    continue
                try:
                    sock = await _udp_target(route)
                except OSError as exc:
                    log.info("forward %s: target unreachable: %s", _where(route), exc)
                    continue
                peer = peers[addr] = _Peer(sock, anyio.current_time())
                tg.start_soon(back, addr, peer)
            peer.last = anyio.current_time()
            with contextlib.suppress(OSError, anyio.BrokenResourceError):
                await peer.sock.send(data)


async def relay_stream(a: socket.socket, b: socket.socket) -> None:
    """Relay two connected, non-blocking stream sockets of any family (TCP, unix) both ways,
    with the half-close and reset rules above, until both ends are done."""
    await _splice(a, b)
