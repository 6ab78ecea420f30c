"""Shared work in a task group: runs once for every job waiting, outlives a cancelled job,
stops when the last one leaves, hands failures to everyone and forgets them."""

from __future__ import annotations

import anyio
import pytest

from dirk.solver.shared import Flight, SharedWork

pytestmark = pytest.mark.anyio


async def test_work_asked_for_by_several_runs_once() -> None:
    shared: SharedWork[str] = SharedWork()
    runs: list[str] = []

    async def work(flight: Flight[str]) -> str:
        runs.append("run")
        await anyio.sleep(0.05)
        return "value"

    results: list[str] = []

    async def ask(member: str) -> None:
        results.append(await shared.run("key", work, member))

    async with shared.serving(), anyio.create_task_group() as tg:
        for member in ("a", "b", "c"):
            tg.start_soon(ask, member)
    assert results == ["value"] * 3 and runs == ["run"]
    assert not shared.running("key")


async def test_the_work_outlives_the_cancelled_first_caller() -> None:
    shared: SharedWork[str] = SharedWork()
    runs: list[str] = []
    started = anyio.Event()
    release = anyio.Event()

    async def work(flight: Flight[str]) -> str:
        runs.append("run")
        started.set()
        await release.wait()
        return "value"

    got: list[str] = []

    async def second() -> None:
        got.append(await shared.run("key", work, "second"))

    async with shared.serving(), anyio.create_task_group() as tg:
        with anyio.CancelScope() as first:
            tg.start_soon(second)
            await started.wait()
            first.cancel()
            await shared.run("key", work, "first")
        assert first.cancelled_caught
        release.set()
    assert got == ["value"] and runs == ["run"]


async def test_the_last_caller_leaving_cancels_the_work_and_waits_for_its_cleanup() -> None:
    shared: SharedWork[str] = SharedWork()
    started = anyio.Event()
    cleaned: list[str] = []

    async def work(flight: Flight[str]) -> None:
        try:
            started.set()
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.sleep(0.05)  # e.g. killing a container
                cleaned.append("cleaned")

    async with shared.serving():
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(shared.run, "key", work, "a")
                tg.start_soon(shared.run, "key", work, "b")
                await started.wait()
                scope.cancel()
        assert cleaned == ["cleaned"], "the caller's cancellation ended before the cleanup"
        assert not shared.running("key")

        async def quick(flight: Flight[str]) -> str:
            return "fresh"

        assert await shared.run("key", quick, "c") == "fresh"  # a new run, not the cancelled one


async def test_a_failure_reaches_every_waiter_and_is_not_remembered() -> None:
    shared: SharedWork[str] = SharedWork()
    calls: list[int] = []

    async def failing(flight: Flight[str]) -> str:
        calls.append(1)
        await anyio.sleep(0.02)
        raise ValueError("broken")

    errors: list[str] = []

    async def ask(member: str) -> None:
        try:
            await shared.run("key", failing, member)
        except ValueError as exc:
            errors.append(str(exc))

    async with shared.serving():
        async with anyio.create_task_group() as tg:
            tg.start_soon(ask, "a")
            tg.start_soon(ask, "b")
        assert errors == ["broken", "broken"] and len(calls) == 1

        async def fixed(flight: Flight[str]) -> str:
            return "ok"

        assert await shared.run("key", fixed, "a") == "ok"


async def test_waiting_names_the_callers_behind_nested_work_each_once() -> None:
    shared: SharedWork[str] = SharedWork()
    seen: list[tuple[str, ...]] = []
    both_joined = anyio.Event()

    async def inner(flight: Flight[str]) -> None:
        await both_joined.wait()
        seen.append(shared.waiting(flight))

    async def outer(flight: Flight[str]) -> None:
        await shared.run("inner", inner, flight)

    async with shared.serving(), anyio.create_task_group() as tg:
        tg.start_soon(shared.run, "outer-1", outer, "job-a")
        tg.start_soon(shared.run, "outer-1", outer, "job-b")
        tg.start_soon(shared.run, "outer-2", outer, "job-a")
        with anyio.fail_after(5):
            while not shared.running("inner") or shared.waiters("inner") < 2:
                await anyio.sleep(0.01)
        both_joined.set()
    assert seen == [("job-a", "job-b")]


async def test_running_work_needs_the_task_group() -> None:
    shared: SharedWork[str] = SharedWork()

    async def work(flight: Flight[str]) -> None:
        return None

    with pytest.raises(RuntimeError, match="not running"):
        await shared.run("key", work, "a")
