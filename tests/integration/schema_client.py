"""A session that queries the schema in-process, the way the wire server does: the base of the
integration tests that drive the API without HTTP (their own helpers build on it)."""

from __future__ import annotations

from typing import Any

from graphql import ExecutionResult, GraphQLSchema, graphql

from dirk.api import RequestContext, build_schema
from dirk.engine import EngineCore
from dirk.engine.sessions import Session
from dirk.wire.errors import format_error

SCHEMA: GraphQLSchema = build_schema()


class SchemaClient:
    def __init__(self, engine: EngineCore, session: Session) -> None:
        self.engine = engine
        self.session = session

    async def run(self, query: str, **variables: Any) -> ExecutionResult:
        context = RequestContext(engine=self.engine, session=self.session)
        return await graphql(SCHEMA, query, variable_values=variables, context_value=context)

    async def data(self, query: str, **variables: Any) -> Any:
        result = await self.run(query, **variables)
        assert result.errors is None, [format_error(e) for e in result.errors]
        return result.data

    async def error(self, query: str, **variables: Any) -> BaseException:
        """The exception behind the first error of an answer that must fail."""
        result = await self.run(query, **variables)
        assert result.errors, f"expected an error, got {result.data}"
        original = result.errors[0].original_error
        assert original is not None, result.errors[0]
        return original

    async def error_message(self, query: str, **variables: Any) -> str:
        """The message of the first error of an answer that must fail: the words a client reads."""
        result = await self.run(query, **variables)
        assert result.errors, f"expected an error, got {result.data}"
        return str(result.errors[0].message)
