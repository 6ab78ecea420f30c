"""Sources served by a service of the session (`experimentalServiceHost`, `registryService`).

The service is started (or joined) and held only while the source is fetched, as a binding
holds it for a step; its hostname then names its bridge address, which the engine reaches
directly, instead of being resolved. The fetched content is keyed as any other (an HTTP
download by its digest, an image by its manifest digest), never by the service. A registry
service stands for whatever registry the image address names.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from dirk.errors import InvalidArgumentError
from dirk.solver.job import Job
from dirk.solver.ops import HostServiceDef, ServiceBinding, ServiceDef
from dirk.workers.images.reference import ImageReference

if TYPE_CHECKING:
    from dirk.solver.services import ServiceManager


@asynccontextmanager
async def served_hosts(
    services: ServiceManager, job: Job, service: ServiceDef | HostServiceDef | None
) -> AsyncIterator[dict[str, str]]:
    """{hostname: address} of `service` running and healthy for `job`'s session during the
    block (empty, starting nothing, without a service)."""
    if service is None:
        yield {}
        return
    async with services.bound(job, (ServiceBinding("", service),)) as (endpoint,):
        yield {endpoint.hostname.lower(): endpoint.address}


@asynccontextmanager
async def served_registry(
    services: ServiceManager,
    job: Job,
    service: ServiceDef | HostServiceDef | None,
    reference: str,
) -> AsyncIterator[dict[str, str]]:
    """{registry of `reference`: "address:port"} with `service` running for `job`'s session
    during the block: the address's port, else the service's first exposed TCP port (empty,
    starting nothing, without a service)."""
    if service is None:
        yield {}
        return
    registry = ImageReference.parse(reference).registry
    port = _port_of(registry) or _first_port(service, reference)
    async with services.bound(job, (ServiceBinding("", service),)) as (endpoint,):
        yield {registry: f"{endpoint.address}:{port}"}


def _port_of(registry: str) -> int | None:
    """The port a registry name (`host[:port]`, `[v6]:port`) gives, if any."""
    _, colon, port = registry.rpartition(":")
    return int(port) if colon and port.isdigit() else None


def _first_port(service: ServiceDef | HostServiceDef, reference: str) -> int:
    ports = [p.port for p in service.ports if p.protocol == "TCP"]
    if not ports:
        raise InvalidArgumentError(
            f"registryService for {reference!r}: the address names no port and the service "
            "exposes none; give the port in the address (host:5000/...) or expose it with "
            "withExposedPort before asService"
        )
    return ports[0]
