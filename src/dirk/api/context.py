"""What every resolver gets as `info.context`: the engine (for its solver), the session, and
the solver job of this request (the session's secret store and event sink)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from dirk.api.table import SessionTable
from dirk.api.values import Handle
from dirk.solver.job import Job

if TYPE_CHECKING:
    from graphql import GraphQLResolveInfo

    from dirk.engine.core import Engine
    from dirk.engine.sessions import Session
    from dirk.solver.solver import Solver


@attrs.define
class RequestContext:
    """The `context_value` of one GraphQL request."""

    engine: Engine
    session: Session
    _job: Job | None = attrs.field(default=None, init=False, repr=False)

    @property
    def solver(self) -> Solver:
        return self.engine.solver

    @property
    def job(self) -> Job:
        """What every solver call of this request passes, made once: the session's secret
        store (the table's) and its event sink."""
        if self._job is None:
            session = self.session
            self._job = Job(
                session=session.token[:8], secrets=self.table.secrets, events=session.events
            )
        return self._job

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
