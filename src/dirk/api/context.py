"""What every resolver gets as `info.context`: the engine (for its solver), the session, and
the solver job of this request (the session's secret store and event sink)."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from dirk.api.table import SessionTable
from dirk.api.values import Handle
from dirk.solver.job import EventSink, Job, SessionAccess
from dirk.solver.leases import Lease
from dirk.workers.hostaccess import HostAccess, HostUser, refuse_state_path
from dirk.workers.images.auth import DockerConfig, docker_config_of

if TYPE_CHECKING:
    from graphql import GraphQLResolveInfo

    from dirk.engine.core import EngineCore
    from dirk.engine.sessions import Session
    from dirk.solver.solver import Solver


#: Where a session keeps its lease (`Session.state`).
_LEASE = "dirk.lease"


@attrs.define
class RequestContext:
    """The `context_value` of one GraphQL request."""

    engine: EngineCore
    session: Session
    _job: Job | None = attrs.field(default=None, init=False, repr=False)

    @property
    def solver(self) -> Solver:
        return self.engine.solver

    @property
    def job(self) -> Job:
        """What every solver call of this request passes, made once: the session's secret
        store (the table's), its event sink and its owner's host access."""
        if self._job is None:
            session = self.session
            self._job = Job(
                session=session.token[:8],
                secrets=self.table.secrets,
                events=self._events(),
                host=self._owner_access(),
                explain=session.explain,
                terminals=session.terminals,
                docker_config=self._docker_config_reader(),
                session_access=(
                    SessionAccess(session.engine_port, session.token)
                    if session.engine_port
                    else None
                ),
                lease=self._session_lease(),
            )
        return self._job

    def _session_lease(self) -> Lease:
        """What the session uses, kept from the garbage collector until it ends."""
        lease = self.session.state.get(_LEASE)
        if isinstance(lease, Lease):
            return lease
        leases = self.solver.leases
        lease = self.session.state[_LEASE] = leases.open(self.session.token)
        engine = self.engine

        async def release() -> None:
            leases.release(lease)
            with contextlib.suppress(RuntimeError):  # an in-process engine already closed
                await engine.gc.touch(lease.keys)

        self.session.add_cleanup(release)
        return lease

    def _docker_config_reader(self) -> Callable[[], Awaitable[DockerConfig]] | None:
        """How this session's registry credentials are read: its owner's Docker config
        (the client's DOCKER_CONFIG, else the owner's ~/.docker), with the owner's rights;
        None for a root session without DOCKER_CONFIG (the engine's own config)."""
        session = self.session
        owner_is_engine = self._owner_access().same_as_engine
        if owner_is_engine and "DOCKER_CONFIG" not in session.client_env:
            return None
        path = docker_config_of(session.owner.uid, session.client_env)
        access = self._owner_access()

        async def read() -> DockerConfig:
            if path is None:
                return DockerConfig(Path("(no home directory)"))
            return await access.run(DockerConfig.load, path)

        return read

    def _owner_access(self) -> HostAccess:
        return HostAccess.for_user(self.session.owner)

    def _events(self) -> EventSink:
        """The session's event sink, and the request's step spans when tracing is on."""
        telemetry = self.engine.telemetry
        if telemetry is None:
            return self.session.events
        return telemetry.step_sink(self.session.events)

    @property
    def host(self) -> HostAccess:
        """Host files are read and written with the session owner's rights, never the
        engine's."""
        return self.job.host

    @property
    def host_owner(self) -> HostUser | None:
        """Whose rights host operations read with: None for the engine's own user (root)."""
        return None if self.host.same_as_engine else self.session.owner

    def host_checked(self, path: Path) -> Path:
        """`path`, refused when it is inside the engine's state directory."""
        return refuse_state_path(path, self.engine.layout.root)

    @property
    def table(self) -> SessionTable:
        return SessionTable.of(self.session)

    @property
    def workdir(self) -> Path:
        return Path(self.session.workdir)

    def load(self, object_id: object, expected: str) -> Handle:
        """The object an ID argument names, checked to be of type `expected`."""
        return self.table.load(object_id, expected)


if TYPE_CHECKING:
    #: What resolvers get as `info`.
    Info = GraphQLResolveInfo[RequestContext]
