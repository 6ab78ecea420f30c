"""A type checker sees the right mode: awaitables under `async with`, values under `with`."""

from __future__ import annotations

from pathlib import Path

import pytest
from mypy import api

ROOT = Path(__file__).resolve().parents[2]

SAMPLE = """
from collections.abc import Coroutine
from typing import Any, assert_type

import dirk
from dirk import Async, Sync


def base(client: dirk.Client[dirk.M]) -> dirk.Container[dirk.M]:  # for both modes
    return client.container().from_("alpine").with_env_variable("CI", "1")


async def async_use() -> None:
    async with dirk.Connection(dirk.Config(timeout=60)) as client:
        assert_type(client, dirk.Client[Async])
        assert_type(base(client), dirk.Container[Async])
        ctr = client.container().from_("alpine").with_exec(["echo", "hi"])
        assert_type(ctr, dirk.Container[Async])
        pending = assert_type(ctr.stdout(), Coroutine[Any, Any, str])
        await pending
        out: str = await ctr.stdout()
        code: int = await ctr.exit_code()
        synced = await ctr.sync()
        assert_type(synced, dirk.Container[Async])
        value: str | None = await ctr.env_variable("PATH")
        for variable in await ctr.env_variables():
            name: str = await variable.name()
        src = client.host().directory(".", exclude=["*.pyc"])
        ctr = ctr.with_mounted_directory("/src", src).with_mounted_cache(
            "/c", client.cache_volume("k"), sharing=dirk.CacheSharingMode.LOCKED
        )
        entries: list[str] = await src.entries()


def sync_use() -> None:
    with dirk.Connection() as client:
        assert_type(client, dirk.Client[Sync])
        assert_type(base(client).stdout(), str)
        ctr = client.container().from_("alpine").with_exec(["echo", "hi"])
        assert_type(ctr.stdout(), str)
        code: int = ctr.exit_code()
        assert_type(ctr.sync(), dirk.Container[Sync])
        assert_type(ctr.env_variables(), list[dirk.EnvVariable[Sync]])
        contents: str = ctr.file("/etc/os-release").contents()


def add_ci(ctr: dirk.Container[dirk.M]) -> dirk.Container[dirk.M]:
    return ctr.with_env_variable("CI", "1")


async def dagger_style_async() -> None:
    async with dirk.connection() as client:
        assert_type(client, dirk.Client[Async])
        ctr = dirk.dag.container().from_("alpine").with_(add_ci).with_exec(["true"])
        assert_type(ctr, dirk.Container[dirk.Either])
        out: str = await ctr.stdout()
        synced = await ctr
        assert_type(synced, dirk.Container[dirk.Either])
        typed = await client.container().with_(add_ci)
        assert_type(typed, dirk.Container[Async])


def dagger_style_sync() -> None:
    with dirk.connection() as client:
        assert_type(client, dirk.Client[Sync])
        out: str = dirk.dag.container().from_("alpine").with_exec(["true"]).stdout()
        assert_type(client.container().with_(add_ci).stdout(), str)


async def mistakes() -> None:
    with dirk.Connection() as sync_client:
        async with dirk.Connection() as async_client:
            not_awaited: str = async_client.container().stdout()  # E1
            sync_dir = sync_client.directory()
            async_client.container().with_directory("/x", sync_dir)  # E2
            async_client.container().with_exec("echo hi")  # E3
            await sync_client.container()  # E4
"""


def test_modes_type_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(SAMPLE)
    monkeypatch.setenv("MYPYPATH", str(ROOT / "src"))
    stdout, stderr, _ = api.run(
        [
            "--strict",
            "--python-version=3.11",
            "--cache-dir",
            str(ROOT / ".mypy_cache"),
            "--no-error-summary",
            "--hide-error-context",
            str(sample),
        ]
    )
    lines = SAMPLE.splitlines()
    errors = {}
    for line in stdout.splitlines():
        if ": error:" in line:
            number = int(line.split(":")[1])
            errors[number] = line
    marked = {i + 1 for i, text in enumerate(lines) if "# E" in text}
    unexpected = [errors[n] for n in sorted(errors) if n not in marked]
    assert not unexpected, "mypy rejects correct usage:\n" + "\n".join(unexpected) + stderr
    missed = [lines[n - 1].strip() for n in sorted(marked) if n not in errors]
    assert not missed, "mypy accepts mistakes:\n" + "\n".join(missed)
