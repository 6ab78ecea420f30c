"""Services that cross between the host and the containers' network: port forwarders that the
`ServiceManager` runs in place of a container.

- `Host.service` (`HostServiceDef`): a network namespace of the executor's pool with no
  container in it; listeners opened inside it on its bridge address, one per port, relay each
  connection (or UDP peer) to `host:backend` as the engine reaches it. Containers bound to it
  reach it by alias or hostname like any service (the bridge's pairs let them).
- `Host.tunnel` (`TunnelDef`), and `Service.up` through it: listeners on the host's
  127.0.0.1 (never another address: the owner asked for a tunnel on their machine, not for a
  port open to the network) relaying to the upstream service's bridge address, which the
  engine reaches directly. A frontend of 0 is a free port the kernel picks.

Both stand in for a container with a `Forwarding` handle: it "runs" until stopped, and
leaving its context closes every listener and connection and gives the namespace back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Literal

import anyio
import anyio.to_thread
import attrs

from dirk.solver.ops import HostServiceDef, ServiceBinding, TunnelDef
from dirk.workers.executor.forward import (
    LOOPBACK,
    Bound,
    Forwarder,
    Route,
    check_host_port,
    open_listeners,
)

if TYPE_CHECKING:
    from dirk.solver.job import Job
    from dirk.solver.services import Endpoint, Instance
    from dirk.workers.executor.executor import Executor

    #: `ServiceManager.bound`: the given services running, held while the context lasts.
    Bind = Callable[
        [Job, Sequence[ServiceBinding]], AbstractAsyncContextManager[tuple[Endpoint, ...]]
    ]

log = logging.getLogger(__name__)


@attrs.frozen
class BoundPort:
    """One forwarded port as it runs: `port` is the listening port (a random one resolved),
    `backend` the port it relays to."""

    port: int
    backend: int
    protocol: Literal["TCP", "UDP"]
    description: str


class Forwarding:
    """A running forwarder, with the parts of a running container's handle that the service
    manager uses (address, veth, wait, stop, kill, output)."""

    def __init__(
        self, *, address: str, veth: str, command: tuple[str, ...], ports: Sequence[BoundPort]
    ) -> None:
        #: Where clients connect: a bridge address (Host.service) or 127.0.0.1 (tunnels).
        self.address = address
        #: The namespace's host-side veth (Host.service), "" for host listeners.
        self.veth = veth
        self.command = command
        self.ports = tuple(ports)
        self.started = time.monotonic()
        self.exit_code: int | None = None
        self.runtime_error = ""
        self._ended = anyio.Event()

    @property
    def running(self) -> bool:
        return not self._ended.is_set()

    def output_tail(self) -> bytes:
        return b""

    async def wait(self) -> int:
        await self._ended.wait()
        return 0

    async def stop(self, grace: float) -> int:
        return await self.kill()

    async def kill(self) -> int:
        """Mark it ended; its context closes the listeners and connections."""
        self.exit_code = 0
        self._ended.set()
        return 0


@asynccontextmanager
async def _forwarding(
    bound: list[Bound], address: str, veth: str, command: tuple[str, ...]
) -> AsyncIterator[Forwarding]:
    forwarder = Forwarder(bound)
    try:
        ports = [
            BoundPort(
                b.port,
                b.route.target_port,
                "TCP" if b.route.protocol == "tcp" else "UDP",
                f"tunnel {b.route.listen_host}:{b.port} -> "
                f"{b.route.target_host}:{b.route.target_port}",
            )
            for b in bound
        ]
        async with anyio.create_task_group() as tg:
            await tg.start(forwarder.serve)
            handle = Forwarding(address=address, veth=veth, command=command, ports=ports)
            try:
                yield handle
            finally:
                await handle.kill()
                tg.cancel_scope.cancel()
    finally:
        forwarder.close()


@asynccontextmanager
async def serve_host_service(
    executor: Executor, definition: HostServiceDef
) -> AsyncIterator[Forwarding]:
    """`definition`'s listeners in a namespace of their own, relaying to the host."""
    async with executor.network_namespace() as ns:
        routes = [
            Route(p.protocol.lower(), ns.address, p.frontend, definition.host, p.backend)  # type: ignore[arg-type]
            for p in definition.forwards
        ]
        bound = await anyio.to_thread.run_sync(open_listeners, routes, ns.name)
        async with _forwarding(bound, ns.address, ns.veth, (definition.describe(),)) as handle:
            log.info(
                "host service at %s: %s",
                ns.address,
                ", ".join(p.description for p in handle.ports),
            )
            yield handle


@asynccontextmanager
async def serve_tunnel(
    definition: TunnelDef, upstream_address: str, owner_uid: int
) -> AsyncIterator[Forwarding]:
    """`definition`'s listeners on the host's loopback, relaying to the upstream service at
    `upstream_address`; a port the session's owner could not listen on is refused."""
    for p in definition.forwards:
        check_host_port(p.frontend, owner_uid)
    routes = [
        Route(p.protocol.lower(), LOOPBACK, p.frontend, upstream_address, p.backend)  # type: ignore[arg-type]
        for p in definition.forwards
    ]
    bound = await anyio.to_thread.run_sync(open_listeners, routes)
    async with _forwarding(bound, LOOPBACK, "", (definition.describe(),)) as handle:
        log.info("tunnel up: %s", ", ".join(p.description for p in handle.ports))
        yield handle


async def start_forwarding(
    executor: Executor, bind: Bind, instance: Instance, job: Job, stack: AsyncExitStack
) -> Forwarding | None:
    """Start the forwarder of `instance` (a host service or a tunnel), its resources on
    `stack`: what the service manager does instead of starting a container; None when a
    stop came first. A tunnel holds its upstream service (started, or joined) as one of its
    users while it runs. (A forwarder's context holds a task group across its block, so it
    is entered outside the instance's phase scopes.)"""
    definition = instance.service
    if isinstance(definition, HostServiceDef):
        return await stack.enter_async_context(serve_host_service(executor, definition))
    assert isinstance(definition, TunnelDef)
    with instance.phase() as phase:
        (upstream,) = await stack.enter_async_context(
            bind(job, (ServiceBinding("", definition.upstream),))
        )
    if phase.cancelled_caught:
        return None
    return await stack.enter_async_context(
        serve_tunnel(definition, upstream.address, job.host.user.uid)
    )
