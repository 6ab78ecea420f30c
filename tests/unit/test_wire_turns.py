"""`TurnTakingExecutor`: a wide selection set lets other work run between its groups, and its
answer is exactly the one graphql-core's own executor gives, errors and null bubbling included."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from graphql import (
    GraphQLField,
    GraphQLInt,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLString,
    execute,
    parse,
)

from dirk.wire.turns import FIELDS_PER_TURN, TurnTakingExecutor


async def _async_value(*_: Any) -> str:
    return "v"


async def _async_failure(*_: Any) -> str:
    raise ValueError("the resolver failed")


def _sync_failure(*_: Any) -> str:
    raise ValueError("the sync resolver failed")


_LEAF = GraphQLObjectType(
    "Leaf",
    {
        "value": GraphQLField(GraphQLString, resolve=_async_value),
        "n": GraphQLField(GraphQLInt, resolve=lambda *_: 7),
        "broken": GraphQLField(GraphQLString, resolve=_async_failure),
        "required": GraphQLField(GraphQLNonNull(GraphQLString), resolve=_async_failure),
    },
)

SCHEMA = GraphQLSchema(
    GraphQLObjectType(
        "Query",
        {
            "value": GraphQLField(GraphQLString, resolve=_async_value),
            "n": GraphQLField(GraphQLInt, resolve=lambda *_: 7),
            "broken": GraphQLField(GraphQLString, resolve=_async_failure),
            "syncBroken": GraphQLField(GraphQLString, resolve=_sync_failure),
            "leaf": GraphQLField(_LEAF, resolve=lambda *_: object()),
            "requiredLeaf": GraphQLField(GraphQLNonNull(_LEAF), resolve=lambda *_: object()),
        },
    )
)

WIDE = FIELDS_PER_TURN * 10


def _aliases(field: str, count: int, prefix: str = "a") -> str:
    return " ".join(f"{prefix}{i}: {field}" for i in range(count))


async def _run(query: str, executor: type | None) -> tuple[Any, list[dict[str, Any]]]:
    result = execute(SCHEMA, parse(query), executor_class=executor)
    if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
        result = await result
    errors = sorted((e.formatted for e in result.errors or []), key=lambda e: str(e["path"]))
    return result.data, errors


DOCUMENTS = {
    "wide async leaves": "{" + _aliases("value", WIDE) + "}",
    "wide sync leaves": "{" + _aliases("n", WIDE) + "}",
    "failures among them": "{" + _aliases("value", WIDE) + " " + _aliases("broken", 40, "b") + "}",
    "a sync failure in a late group": "{" + _aliases("n", WIDE) + " late: syncBroken }",
    "wide nested set": "{ leaf { " + _aliases("value", WIDE) + " } }",
    "a null bubbling up to the root": (
        "{ requiredLeaf { " + _aliases("value", WIDE) + " required } }"
    ),
    "many narrow nested sets": "{" + _aliases("leaf { value n broken }", WIDE) + "}",
}


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_the_answer_is_graphql_cores_own(name: str) -> None:
    query = DOCUMENTS[name]
    expected = asyncio.run(_run(query, None))
    got = asyncio.run(_run(query, TurnTakingExecutor))
    assert got == expected
    if isinstance(got[0], dict):
        assert list(got[0]) == list(expected[0])  # fields keep their order in the answer


def _turns_seen(query: str, executor: type | None) -> int:
    """How many times another task got the loop while the query executed."""

    async def main() -> int:
        turns = 0
        done = False

        async def other_session() -> None:
            nonlocal turns
            while not done:
                await asyncio.sleep(0)
                turns += 1

        other = asyncio.create_task(other_session())
        await asyncio.sleep(0)
        before = turns
        await _run(query, executor)
        seen = turns - before
        done = True
        await other
        return seen

    return asyncio.run(main())


def test_a_wide_selection_set_lets_others_run_between_its_groups() -> None:
    query = "{" + _aliases("value", WIDE) + "}"
    groups = WIDE // FIELDS_PER_TURN
    assert _turns_seen(query, None) < 5  # graphql-core's own: one long stretch
    assert _turns_seen(query, TurnTakingExecutor) >= groups - 1


def test_a_cancelled_query_stops_its_running_groups() -> None:
    started: list[int] = []
    finished: list[int] = []

    async def slow(*_: Any) -> str:
        started.append(1)
        await asyncio.sleep(30)
        finished.append(1)
        return "late"

    schema = GraphQLSchema(
        GraphQLObjectType("Query", {"slow": GraphQLField(GraphQLString, resolve=slow)})
    )

    async def main() -> None:
        document = parse("{" + _aliases("slow", WIDE) + "}")
        task = asyncio.ensure_future(execute(schema, document, executor_class=TurnTakingExecutor))  # type: ignore[arg-type]
        while len(started) < WIDE:
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0)
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), 5)

    asyncio.run(main())
    assert len(started) == WIDE
    assert finished == []
