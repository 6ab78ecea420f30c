"""Execution that takes turns: a wide selection set never holds the event loop for long.

Every session's queries are executed on the engine's one event loop. graphql-core starts all
fields of a selection set in one synchronous pass and then steps every field's resolver in
one loop iteration, so a document of 19,000 aliased fields (inside the limits) held the loop
for about 700 ms, and every other session's small query waited behind it.

`TurnTakingExecutor` cuts a selection set wider than `FIELDS_PER_TURN` into groups. Each group
is started as graphql-core would start it, then the executor yields to the loop before the
next: a turn costs a group's start plus the previous group's resolver steps (a millisecond or
two), and other sessions run in between. Groups still run concurrently with each other (a
group's resolvers are not awaited before the next group starts), fields keep their order in
the answer, and an error in one field is handled exactly as graphql-core handles it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from graphql import GraphQLObjectType
from graphql.execution.collect_fields import GroupedFieldSet
from graphql.execution.incremental.incremental_executor import IncrementalExecutor
from graphql.pyutils import AwaitableOrValue, Path

#: Fields started per turn. Selection sets up to this wide are executed untouched; a turn of a
#: wider one also completes its fields' own selection sets, so it costs at most about this
#: many squared field executions when those are narrow (wider ones take turns themselves).
FIELDS_PER_TURN = 32


class TurnTakingExecutor(IncrementalExecutor):
    """graphql-core's executor, yielding to the event loop between groups of a wide selection
    set (see the module docstring)."""

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: GroupedFieldSet,
        position_context: Any,
    ) -> AwaitableOrValue[dict[str, Any]]:
        if len(grouped_field_set) <= FIELDS_PER_TURN:
            return super().execute_fields(
                parent_type, source_value, path, grouped_field_set, position_context
            )
        return self._execute_fields_in_turns(
            parent_type, source_value, path, grouped_field_set, position_context
        )

    async def _execute_fields_in_turns(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: GroupedFieldSet,
        position_context: Any,
    ) -> dict[str, Any]:
        items = list(grouped_field_set.items())
        parts: list[dict[str, Any] | asyncio.Future[dict[str, Any]]] = []
        try:
            for start in range(0, len(items), FIELDS_PER_TURN):
                if start:
                    await asyncio.sleep(0)  # the turn: other sessions run here
                group = dict(items[start : start + FIELDS_PER_TURN])
                part = super().execute_fields(
                    parent_type, source_value, path, group, position_context
                )
                parts.append(part if isinstance(part, dict) else asyncio.ensure_future(part))
            running = [part for part in parts if isinstance(part, asyncio.Future)]
            if running:
                await asyncio.gather(*running)
        except BaseException:
            _stop([part for part in parts if isinstance(part, asyncio.Future)])
            raise
        results: dict[str, Any] = {}
        for part in parts:
            results.update(part.result() if isinstance(part, asyncio.Future) else part)
        return results


def _stop(futures: list[asyncio.Future[dict[str, Any]]]) -> None:
    """Groups still running when another failed or the query was cancelled: cancelled, and
    their outcome retrieved so that none is reported as never retrieved."""
    for future in futures:
        if future.done():
            if not future.cancelled():
                future.exception()
        else:
            future.cancel()
            future.add_done_callback(_retrieve)


def _retrieve(future: asyncio.Future[dict[str, Any]]) -> None:
    if not future.cancelled():
        future.exception()
