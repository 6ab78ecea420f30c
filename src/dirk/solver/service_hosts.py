"""Sources served by a service of the session (`experimentalServiceHost`).

The service is started (or joined) and held only while the source is fetched, as a binding
holds it for a step; its hostname then names its bridge address, which the engine reaches
directly, instead of being resolved. The fetched content is keyed as any other (an HTTP
download by its digest), never by the service.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from dirk.solver.job import Job
from dirk.solver.ops import HostServiceDef, ServiceBinding, ServiceDef

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
