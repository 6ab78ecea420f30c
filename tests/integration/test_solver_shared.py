"""Shared work across jobs on a real engine: an exec two jobs wait for runs once, survives the
first job's cancellation, and dies (container killed, mounts gone) when both have left."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from dirk.engine import EngineCore
from dirk.solver.job import Job, StepEvent
from tests.integration.engine_helpers import image, sh

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


def _overlays_under(path: Path) -> list[str]:
    return [
        line
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if " - overlay " in line and str(path) in line
    ]


def _processes_running(marker: str) -> list[int]:
    """Host pids whose command line holds `marker` (a container's processes are host ones)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(int(entry.name))
    return found


async def _until(condition: Callable[[], bool]) -> None:
    with anyio.fail_after(60):
        while not condition():
            await anyio.sleep(0.01)


async def test_a_shared_exec_outlives_the_first_job_and_runs_once(
    engine: EngineCore, busybox_ref: str
) -> None:
    root, _ = await image(engine, busybox_ref)
    token = secrets.token_hex(8)
    step = sh(root, f"sleep 1; echo {token}")
    solver = engine.solver
    events: dict[str, list[StepEvent]] = {"first": [], "second": []}
    first = Job(session="first", events=events["first"].append)
    second = Job(session="second", events=events["second"].append)
    got: list[str] = []

    async def second_waits() -> None:
        result = await solver.result(second, step)
        assert result.exec is not None
        got.append(result.exec.stdout.decode())

    first_scope = anyio.CancelScope()

    async def first_waits() -> None:
        with first_scope:
            await solver.result(first, step)

    async with anyio.create_task_group() as tg:
        tg.start_soon(first_waits)
        await _until(lambda: solver.counters.execs >= 1)  # the first job's exec started
        tg.start_soon(second_waits)
        await _until(lambda: solver.counters.joined >= 1)  # the second job waits for it
        first_scope.cancel()
    assert first_scope.cancelled_caught, "the first job was not waiting when cancelled"
    assert got == [f"{token}\n"]
    assert solver.counters.execs == 1, "the exec ran again after the first job left"
    assert events["second"][-1].kind == "done"
    assert any(e.kind == "stdout" and token.encode() in e.data for e in events["second"])
    assert _overlays_under(engine.layout.run) == []


async def test_cancelling_every_job_kills_the_container_and_releases_its_mounts(
    engine: EngineCore, busybox_ref: str
) -> None:
    root, _ = await image(engine, busybox_ref)
    marker = f"1{secrets.randbelow(10**8):08d}"  # a unique sleep length: `sleep 1xxxxxxxx`
    step = sh(root, f"sleep {marker}; echo never")
    solver = engine.solver
    jobs = [Job(session="one"), Job(session="two")]
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            for job in jobs:
                tg.start_soon(solver.result, job, step)
            await _until(lambda: _processes_running(f"sleep {marker}") != [])  # the exec runs
            assert solver.counters.joined == 1
            scope.cancel()
    assert scope.cancelled_caught
    assert _processes_running(f"sleep {marker}") == [], "the container outlived every job"
    assert _overlays_under(engine.layout.run) == [], "the cancelled exec left overlays mounted"
    assert solver.counters.execs == 1
