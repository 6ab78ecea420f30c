"""What every resolver gets as `info.context`: the engine (for its solver) and the session."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from dirk.api.table import SessionTable
from dirk.api.values import Handle

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

    @property
    def solver(self) -> Solver:
        return self.engine.solver

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
