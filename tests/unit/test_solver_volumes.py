"""Cache volume sharing modes, without containers."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from dirk.solver.volumes import CacheVolumes, volume_dir_name

pytestmark = pytest.mark.anyio


def test_volume_names_are_safe_and_distinct() -> None:
    assert "/" not in volume_dir_name("../../etc")
    assert volume_dir_name("a/b") != volume_dir_name("a-b")


async def test_shared_gives_the_same_dir_at_once(tmp_path: Path) -> None:
    volumes = CacheVolumes(tmp_path)
    async with volumes.acquire("v", "SHARED") as a, volumes.acquire("v", "SHARED") as b:
        assert a == b


async def test_private_gives_separate_dirs_while_busy_and_reuses_after(tmp_path: Path) -> None:
    volumes = CacheVolumes(tmp_path)
    async with volumes.acquire("v", "PRIVATE") as a, volumes.acquire("v", "PRIVATE") as b:
        assert a != b
        (a / "kept").write_text("x")
    async with volumes.acquire("v", "PRIVATE") as again:
        assert again == a and (again / "kept").read_text() == "x"


async def test_locked_waits_for_the_holder(tmp_path: Path) -> None:
    volumes = CacheVolumes(tmp_path)
    order: list[str] = []

    async def holder() -> None:
        async with volumes.acquire("v", "LOCKED"):
            order.append("first in")
            await anyio.sleep(0.2)
            order.append("first out")

    async def waiter() -> None:
        await anyio.sleep(0.05)
        async with volumes.acquire("v", "LOCKED"):
            order.append("second in")

    async with anyio.create_task_group() as tg:
        tg.start_soon(holder)
        tg.start_soon(waiter)
    assert order == ["first in", "first out", "second in"]


async def test_seed_fills_a_new_volume_once(tmp_path: Path) -> None:
    volumes = CacheVolumes(tmp_path)
    calls: list[Path] = []

    def seed(path: Path) -> None:
        calls.append(path)
        (path / "seeded").write_text("yes")

    async with volumes.acquire("v", "SHARED", seed) as a:
        assert (a / "seeded").read_text() == "yes"
    async with volumes.acquire("v", "SHARED", seed):
        pass
    assert len(calls) == 1
