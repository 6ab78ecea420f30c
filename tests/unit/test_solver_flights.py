"""Single flight: identical work at once runs once, and a cancelled runner hands it over."""

from __future__ import annotations

import anyio
import pytest

from dirk.solver.flights import Flights

pytestmark = pytest.mark.anyio


async def test_identical_work_at_once_runs_once() -> None:
    flights = Flights()
    runs: list[str] = []

    async def work() -> str:
        runs.append("run")
        await anyio.sleep(0.05)
        return "value"

    results: list[str] = []

    async def ask() -> None:
        results.append(await flights.run("key", work))

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(ask)
    assert results == ["value"] * 3 and runs == ["run"]
    assert not flights.running("key")


async def test_a_waiter_runs_the_work_when_the_runner_is_cancelled() -> None:
    flights = Flights()
    runs: list[str] = []

    async def work() -> None:  # None is a value like any other
        runs.append("run")
        await anyio.sleep(0.1)

    got: list[object] = []

    async def waiter() -> None:
        await anyio.sleep(0.02)
        assert flights.running("key")
        got.append(await flights.run("key", work))

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        with anyio.move_on_after(0.05) as runner:
            await flights.run("key", work)
    assert runner.cancelled_caught
    assert got == [None] and runs == ["run", "run"]


async def test_a_failure_reaches_every_waiter_and_is_not_remembered() -> None:
    flights = Flights()
    calls: list[int] = []

    async def failing() -> str:
        calls.append(1)
        await anyio.sleep(0.02)
        raise ValueError("broken")

    errors: list[str] = []

    async def ask() -> None:
        try:
            await flights.run("key", failing)
        except ValueError as exc:
            errors.append(str(exc))

    async with anyio.create_task_group() as tg:
        tg.start_soon(ask)
        tg.start_soon(ask)
    assert errors == ["broken", "broken"] and len(calls) == 1

    async def fixed() -> str:
        return "ok"

    assert await flights.run("key", fixed) == "ok"
