"""Services between the host and the containers: `Host.service` (containers reach ports of
the host), `Host.tunnel` (the host reaches a container's service) and `Service.up` /
`Container.up` (a tunnel for as long as the request runs).

They are `Service` values like a container's, run by the solver's service manager
(`solver.tunnels` holds their forwarders). A tunnel listens on the host's 127.0.0.1 only,
and on ports the session's owner could listen on themselves (below 1024 only for root).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import anyio

from dirk.api.context import RequestContext
from dirk.api.registry import Args, builds, leaf
from dirk.api.service import _stop_with_session, _svc, container_as_service
from dirk.api.values import Handle, Port, Service
from dirk.errors import PortForwardError
from dirk.solver.job import StepEvent
from dirk.solver.ops import ForwardPort, HostServiceDef, ServiceDef, TunnelDef
from dirk.solver.tunnels import Forwarding
from dirk.workers.executor.forward import LOOPBACK, check_host_port

log = logging.getLogger(__name__)


def _port(field: str, what: str, value: Any) -> int:
    if not isinstance(value, int) or not 1 <= value <= 65535:
        raise PortForwardError(f"{field}: {what} port {value!r} is not in 1..65535")
    return value


def port_forwards(
    field: str, items: Sequence[dict[str, Any]] | None, *, random: bool
) -> list[ForwardPort]:
    """PortForward inputs as ForwardPorts; an absent or 0 frontend is the backend's number
    (`random` False: Host.service) or a free port the kernel picks (`random`: tunnels)."""
    out = []
    for item in items or []:
        backend = _port(field, "backend", item["backend"])
        frontend = item.get("frontend") or 0
        if frontend:
            frontend = _port(field, "frontend", frontend)
        elif not random:
            frontend = backend
        out.append(ForwardPort(frontend, backend, item.get("protocol") or "TCP"))
    return out


def tunnel_forwards(
    upstream: ServiceDef, ports: Sequence[dict[str, Any]] | None, native: bool
) -> tuple[ForwardPort, ...]:
    """Dagger's rules: `native` maps each exposed port to the same host port; explicit
    `ports` add to that; with neither, each exposed port gets a free host port."""
    forwards: list[ForwardPort] = []
    if native:
        forwards += [ForwardPort(p.port, p.port, p.protocol) for p in upstream.ports]
    forwards += port_forwards("Host.tunnel(ports:)", ports, random=True)
    if not forwards:
        forwards = [ForwardPort(0, p.port, p.protocol) for p in upstream.ports]
    if not forwards:
        raise PortForwardError(
            "Host.tunnel: no ports to forward: the service exposes none; expose them with "
            "withExposedPort before asService, or give ports: [{backend: N}]"
        )
    return tuple(dict.fromkeys(forwards))


def _upstream(ctx: RequestContext, service_id: str) -> ServiceDef:
    value = ctx.load(service_id, "Service").value
    assert isinstance(value, Service)
    definition = value.definition
    if not isinstance(definition, ServiceDef):
        raise PortForwardError(
            "Host.tunnel forwards to a container's service (Container.asService); this "
            "service is itself on the host or a tunnel: connect to its ports directly"
        )
    return definition


def _check_owner(ctx: RequestContext, forwards: Sequence[ForwardPort]) -> None:
    for f in forwards:
        check_host_port(f.frontend, ctx.session.owner.uid)


@builds("Host", "service")
async def host_service(ctx: RequestContext, parent: Handle | None, args: Args) -> Service:
    forwards = port_forwards("Host.service(ports:)", args["ports"], random=False)
    if not forwards:
        raise PortForwardError(
            "Host.service needs at least one port: give ports: [{backend: N}] (the host port "
            "to reach; frontend, the port containers connect to, defaults to it)"
        )
    host: str = args["host"] or "localhost"
    _stop_with_session(ctx)
    return Service(HostServiceDef(host=host, forwards=tuple(dict.fromkeys(forwards))))


@builds("Host", "tunnel")
async def host_tunnel(ctx: RequestContext, parent: Handle | None, args: Args) -> Service:
    upstream = _upstream(ctx, args["service"])
    forwards = tunnel_forwards(upstream, args["ports"], bool(args["native"]))
    _check_owner(ctx, forwards)
    _stop_with_session(ctx)
    return Service(TunnelDef(upstream=upstream, forwards=forwards))


async def _running(ctx: RequestContext, tunnel: TunnelDef) -> Forwarding:
    """The session's tunnel `tunnel`, started (and held until `stop`) if it was not."""
    _stop_with_session(ctx)
    instance = await ctx.solver.services.start(ctx.job, tunnel)
    assert isinstance(instance.container, Forwarding)
    return instance.container


async def tunnel_endpoint(
    ctx: RequestContext, tunnel: TunnelDef, port: int | None, scheme: str
) -> str:
    """A tunnel's endpoint is on the host: it is started, as Dagger does, so its (possibly
    random) port is known."""
    forwarding = await _running(ctx, tunnel)
    if port is None:
        port = forwarding.ports[0].port
    return f"{scheme}://{LOOPBACK}:{port}" if scheme else f"{LOOPBACK}:{port}"


async def tunnel_ports(ctx: RequestContext, tunnel: TunnelDef) -> list[Port]:
    """The host ports a running tunnel listens on (it is started if it was not)."""
    forwarding = await _running(ctx, tunnel)
    return [Port(p.port, p.protocol, p.description, True) for p in forwarding.ports]


def refuse_binding(definition: object) -> None:
    """A tunnel listens on the host, not on the containers' network: nothing to bind."""
    if isinstance(definition, TunnelDef):
        raise PortForwardError(
            "withServiceBinding: a tunnel (Host.tunnel) listens on the host's 127.0.0.1, "
            "which containers cannot reach; bind the service it forwards to instead"
        )


async def _up(ctx: RequestContext, upstream: ServiceDef, args: Args) -> None:
    native = not args["random"] and not args["ports"]
    tunnel = TunnelDef(upstream=upstream, forwards=tunnel_forwards(upstream, args["ports"], native))
    _check_owner(ctx, tunnel.forwards)
    services = ctx.solver.services
    try:
        forwarding = await _running(ctx, tunnel)
        key = f"tunnel:{await services.digest(tunnel)}"
        started = anyio.current_time()
        # A step of its own in progress views: started, its ports as output, done at the end.
        ctx.job.emit(StepEvent("start", key, tunnel.describe()))
        for port in forwarding.ports:
            line = (
                f"tunnel started: port={port.port} protocol={port.protocol.lower()} "
                f"http_url=http://{LOOPBACK}:{port.port} description={port.description!r}\n"
            )
            log.info("session %s: %s", ctx.job.session, line.strip())
            ctx.job.emit(StepEvent("stdout", key, tunnel.describe(), line.encode()))
        try:
            await anyio.sleep_forever()
        finally:
            duration = anyio.current_time() - started
            ctx.job.emit(StepEvent("done", key, tunnel.describe(), duration=duration))
    finally:
        with anyio.CancelScope(shield=True):
            await services.stop(ctx.job, tunnel, kill=True)


@leaf("Service", "up", memo=False)
async def service_up(ctx: RequestContext, parent: Handle | None, args: Args) -> None:
    upstream = _svc(parent).definition
    if not isinstance(upstream, ServiceDef):
        raise PortForwardError(
            "Service.up forwards to a container's service; this service is on the host or a "
            "tunnel already: connect to its endpoint"
        )
    await _up(ctx, upstream, args)


@leaf("Container", "up", memo=False)
async def container_up(ctx: RequestContext, parent: Handle | None, args: Args) -> None:
    service = await container_as_service(ctx, parent, args)
    assert isinstance(service.definition, ServiceDef)
    await _up(ctx, service.definition, args)
