"""`Service` and the container fields that make and bind services.

A `Service` is a value: the command a container would run (`asService`: its args, or the
default command, with the entrypoint when asked, as Dagger does) plus the container's exposed
ports, and an optional hostname. Building one runs nothing; `withServiceBinding` makes every
later `withExec` of the container start it first (`solver.services`). `start`/`stop` act on
the session's instance; the session's end stops every instance it started.
"""

from __future__ import annotations

import re
from typing import Literal

import attrs

from dirk.api.container import items, require_root_session
from dirk.api.container_ops import command, exposed_ports, port_key, with_exec
from dirk.api.context import RequestContext
from dirk.api.ids import format_id
from dirk.api.paths import expand
from dirk.api.registry import Args, builds, leaf
from dirk.api.values import Container, Handle, Port, Service
from dirk.errors import InvalidArgumentError
from dirk.solver.ops import HostServiceDef, ServiceBinding, ServiceDef, ServicePort, TunnelDef
from dirk.workers.executor.forward import LOOPBACK

#: A host name a client resolves through /etc/hosts: DNS labels separated by dots.
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")
_SESSION_CLEANUP = "services.cleanup"


def _ctr(parent: Handle | None) -> Container:
    assert parent is not None and isinstance(parent.value, Container)
    return parent.value


def _svc(parent: Handle | None) -> Service:
    assert parent is not None and isinstance(parent.value, Service)
    return parent.value


def _check_hostname(field: str, name: str) -> str:
    if not _HOSTNAME.match(name):
        raise InvalidArgumentError(
            f"{field}: {name!r} is not a valid host name (letters, digits and '-' in labels of "
            "at most 63 characters separated by '.', not starting or ending with '-')"
        )
    return name


def _stop_with_session(ctx: RequestContext) -> None:
    """Once per session: its end stops every service instance it started."""
    state = ctx.session.state
    if state.get(_SESSION_CLEANUP):
        return
    state[_SESSION_CLEANUP] = True
    services = ctx.solver.services
    session = ctx.job.session

    async def cleanup() -> None:
        await services.end_session(session)

    ctx.session.add_cleanup(cleanup)


def service_host(
    ctx: RequestContext, service_id: object, field: str
) -> ServiceDef | HostServiceDef | None:
    """The service an `experimentalServiceHost` argument of `field` names (None when absent),
    stopped with the session like any it starts."""
    if not service_id:
        return None
    service = ctx.load(service_id, "Service").value
    assert isinstance(service, Service)
    definition = service.definition
    if not isinstance(definition, ServiceDef | HostServiceDef):
        raise InvalidArgumentError(
            f"{field}(experimentalServiceHost:): a tunnel (Host.tunnel) already listens on the "
            "host's 127.0.0.1, which the URL can name directly; pass the service it forwards "
            "to instead"
        )
    _stop_with_session(ctx)
    return definition


def service_ports(c: Container) -> tuple[ServicePort, ...]:
    return tuple(
        ServicePort(p.port, p.protocol, p.description, p.experimental_skip_healthcheck)
        for p in exposed_ports(c)
    )


# --- Container ---------------------------------------------------------------------------------


@builds("Container", "asService")
async def container_as_service(ctx: RequestContext, parent: Handle | None, args: Args) -> Service:
    c = _ctr(parent)
    if args["insecureRootCapabilities"]:
        require_root_session(ctx, "asService(insecureRootCapabilities: true)")
    argv: list[str] = list(args["args"] or [])
    if args["expand"]:
        env = dict(c.env)
        argv = [expand(a, env) for a in argv]
    argv_full = command(c, argv, bool(args["useEntrypoint"]))
    op = with_exec(
        c,
        argv_full,
        insecure_root_capabilities=bool(args["insecureRootCapabilities"]),
        nesting=bool(args["experimentalPrivilegedNesting"]),
    ).last_exec
    assert op is not None
    _stop_with_session(ctx)
    return Service(ServiceDef(exec=op, ports=service_ports(c)))


@builds("Container", "withExposedPort")
async def container_with_exposed_port(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Container:
    c = _ctr(parent)
    number: int = args["port"]
    if not 1 <= number <= 65535:
        raise InvalidArgumentError(f"withExposedPort: port {number} is not in 1..65535")
    protocol: Literal["TCP", "UDP"] = args["protocol"] or "TCP"
    key = port_key(number, protocol)
    detail = Port(number, protocol, args["description"], bool(args["experimentalSkipHealthcheck"]))
    ports = c.exposed_ports if key in c.exposed_ports else (*c.exposed_ports, key)
    details = (*(p for p in c.port_details if port_key(p.port, p.protocol) != key), detail)
    return attrs.evolve(c, exposed_ports=ports, port_details=details)


@builds("Container", "withoutExposedPort")
async def container_without_exposed_port(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Container:
    c = _ctr(parent)
    key = port_key(args["port"], args["protocol"] or "TCP")
    return attrs.evolve(
        c,
        exposed_ports=tuple(p for p in c.exposed_ports if p != key),
        port_details=tuple(p for p in c.port_details if port_key(p.port, p.protocol) != key),
    )


@builds("Container", "withServiceBinding")
async def container_with_service_binding(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Container:
    c = _ctr(parent)
    alias = _check_hostname("withServiceBinding(alias:)", args["alias"])
    service = ctx.load(args["service"], "Service").value
    assert isinstance(service, Service)
    from dirk.api.tunnels import refuse_binding  # (it imports this module)

    refuse_binding(service.definition)
    assert not isinstance(service.definition, TunnelDef)
    _stop_with_session(ctx)
    kept = tuple(b for b in c.services if b.alias != alias)
    return attrs.evolve(c, services=(*kept, ServiceBinding(alias, service.definition)))


# --- Service -----------------------------------------------------------------------------------


@leaf("Service", "hostname")
async def service_hostname(ctx: RequestContext, parent: Handle | None, args: Args) -> str:
    definition = _svc(parent).definition
    if isinstance(definition, TunnelDef):
        return LOOPBACK  # a tunnel listens on the host's loopback
    return await ctx.solver.services.hostname(definition)


@leaf("Service", "endpoint", memo=False)
async def service_endpoint(ctx: RequestContext, parent: Handle | None, args: Args) -> str:
    definition = _svc(parent).definition
    port: int | None = args["port"]
    if isinstance(definition, TunnelDef):  # on the host, started to know its ports
        from dirk.api.tunnels import tunnel_endpoint

        return await tunnel_endpoint(ctx, definition, port, args["scheme"] or "")
    if port is None:
        if not definition.ports:
            raise InvalidArgumentError(
                "endpoint: the service exposes no port; give one (endpoint(port:)) or expose "
                "it with withExposedPort before asService"
            )
        port = definition.ports[0].port
    host = await ctx.solver.services.hostname(definition)
    scheme: str = args["scheme"] or ""
    return f"{scheme}://{host}:{port}" if scheme else f"{host}:{port}"


@leaf("Service", "ports", memo=False)
async def service_ports_leaf(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> list[Handle]:
    assert parent is not None
    definition = _svc(parent).definition
    if isinstance(definition, TunnelDef):  # the host ports it listens on, once started
        from dirk.api.tunnels import tunnel_ports

        return items(ctx, parent, "ports", "Port", await tunnel_ports(ctx, definition))
    ports = [Port(p.port, p.protocol, p.description, p.skip_health) for p in definition.ports]
    return items(ctx, parent, "ports", "Port", ports)


@builds("Service", "withHostname")
async def service_with_hostname(ctx: RequestContext, parent: Handle | None, args: Args) -> Service:
    name = _check_hostname("withHostname(hostname:)", args["hostname"])
    service = _svc(parent)
    return Service(attrs.evolve(service.definition, hostname=name))


@leaf("Service", "sync", memo=False)
async def service_sync(ctx: RequestContext, parent: Handle | None, args: Args) -> str:
    """Builds what the service runs on (its container's pipeline), starts nothing."""
    assert parent is not None
    await ctx.solver.solve_all(ctx.job, list(_svc(parent).definition.inputs()))
    return format_id(parent.type_name, parent.ident)


@leaf("Service", "start", memo=False)
async def service_start(ctx: RequestContext, parent: Handle | None, args: Args) -> str:
    assert parent is not None
    _stop_with_session(ctx)
    await ctx.solver.services.start(ctx.job, _svc(parent).definition)
    return format_id(parent.type_name, parent.ident)


@leaf("Service", "stop", memo=False)
async def service_stop(ctx: RequestContext, parent: Handle | None, args: Args) -> str:
    assert parent is not None
    await ctx.solver.services.stop(ctx.job, _svc(parent).definition, kill=bool(args["kill"]))
    return format_id(parent.type_name, parent.ident)
