"""The dirk SDK's async and sync facades on the same pipelines, against a real engine.

One `dirk engine` serves the module (fresh state dir); each test opens its own connections to
it with `Config(engine=...)`, as a program pointed at a running engine would.
"""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import dirk
from dirk.errors import ExecError
from dirk.sdk.modes import M
from tests.integration.sdk_engine import RunningEngine, foreground_engine

pytestmark = [pytest.mark.integration]

GREETING = 'echo "$GREETING from $(pwd) as $(id -u)"; cat note.txt; echo warning >&2'
FAILING = "echo out; echo err >&2; exit 3"


@pytest.fixture(scope="module")
def engine() -> Iterator[RunningEngine]:
    yield from foreground_engine()


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """The program's working directory, holding the host directory `src/`."""
    (tmp_path / "src" / "sub").mkdir(parents=True)
    (tmp_path / "src" / "a.txt").write_text("file a\n")
    (tmp_path / "src" / "sub" / "b.txt").write_text("file b\n")
    (tmp_path / "src" / "build.log").write_text("left out\n")
    return tmp_path


def config(engine: RunningEngine, workdir: Path, **kwargs: Any) -> dirk.Config:
    return dirk.Config(engine=engine.socket_url, workdir=workdir, **kwargs)


def greeting(client: dirk.Client[M], image: str) -> dirk.Container[M]:
    """The pipeline both facades run: env, workdir, a new file, a user, one exec."""
    return (
        client.container()
        .from_(image)
        .with_env_variable("GREETING", "hello")
        .with_workdir("/work")
        .with_new_file("/work/note.txt", "a note\n")
        .with_user("nobody")
        .with_exec(["sh", "-c", GREETING])
    )


def with_sources(client: dirk.Client[M], image: str) -> dirk.Container[M]:
    """A host directory (relative to the session's workdir) copied into the container."""
    src = client.host().directory("src", exclude=["*.log"])
    return (
        client.container()
        .from_(image)
        .with_directory("/src", src)
        .with_exec(["sh", "-c", "cat /src/a.txt /src/sub/b.txt"])
    )


EXPECTED = {
    "stdout": "hello from /work as 65534\na note\n",
    "stderr": "warning\n",
    "exit_code": 0,
    "user": "nobody",
    "workdir": "/work",
    "note": "a note\n",
    "env": {"GREETING": "hello"},
    "entries": ["note.txt"],
    "sources": "file a\nfile b\n",
    "source_entries": ["a.txt", "sub/"],  # directories end with "/", as in Dagger
}


def check_exec_error(error: ExecError) -> None:
    assert error.command == ["sh", "-c", FAILING]
    assert error.exit_code == 3
    assert error.stdout == "out\n"
    assert error.stderr == "err\n"
    assert "exit code: 3" in str(error)


@pytest.mark.anyio
async def test_async_facade(engine: RunningEngine, busybox_ref: str, workspace: Path) -> None:
    async with dirk.Connection(config(engine, workspace)) as client:
        ctr = greeting(client, busybox_ref)
        env = {await v.name(): await v.value() for v in await ctr.env_variables()}
        copied = with_sources(client, busybox_ref)
        seen = {
            "stdout": await ctr.stdout(),
            "stderr": await ctr.stderr(),
            "exit_code": await ctr.exit_code(),
            "user": await ctr.user(),
            "workdir": await ctr.workdir(),
            "note": await ctr.file("/work/note.txt").contents(),
            "env": {k: v for k, v in env.items() if k != "PATH"},
            "entries": await ctr.directory("/work").entries(),
            "sources": await copied.stdout(),
            "source_entries": sorted(await copied.directory("/src").entries()),
        }
        assert seen == EXPECTED
        assert env["PATH"].startswith("/")  # from the image's config

        failing = ctr.with_user("").with_exec(["sh", "-c", FAILING])
        with pytest.raises(ExecError) as caught:
            await failing.stdout()
        check_exec_error(caught.value)
        tolerant = ctr.with_user("").with_exec(["sh", "-c", FAILING], expect=dirk.ReturnType.ANY)
        assert await tolerant.exit_code() == 3
        assert await tolerant.stdout() == "out\n"
        assert await tolerant.stderr() == "err\n"


def test_sync_facade(engine: RunningEngine, busybox_ref: str, workspace: Path) -> None:
    with dirk.Connection(config(engine, workspace)) as client:
        ctr = greeting(client, busybox_ref)
        env = {v.name(): v.value() for v in ctr.env_variables()}
        copied = with_sources(client, busybox_ref)
        seen = {
            "stdout": ctr.stdout(),
            "stderr": ctr.stderr(),
            "exit_code": ctr.exit_code(),
            "user": ctr.user(),
            "workdir": ctr.workdir(),
            "note": ctr.file("/work/note.txt").contents(),
            "env": {k: v for k, v in env.items() if k != "PATH"},
            "entries": ctr.directory("/work").entries(),
            "sources": copied.stdout(),
            "source_entries": sorted(copied.directory("/src").entries()),
        }
        assert seen == EXPECTED

        failing = ctr.with_user("").with_exec(["sh", "-c", FAILING])
        with pytest.raises(ExecError) as caught:
            failing.stdout()
        check_exec_error(caught.value)
        tolerant = ctr.with_user("").with_exec(["sh", "-c", FAILING], expect=dirk.ReturnType.ANY)
        assert tolerant.exit_code() == 3
        assert tolerant.stdout() == "out\n"


@pytest.mark.anyio
async def test_cache_volume_outlives_the_connection(
    engine: RunningEngine, busybox_ref: str, tmp_path: Path
) -> None:
    nonce = uuid.uuid4().hex
    volume = f"sdk-cache-{nonce[:8]}"
    async with dirk.Connection(config(engine, tmp_path)) as client:
        writer = (
            client.container()
            .from_(busybox_ref)
            .with_mounted_cache("/cache", client.cache_volume(volume))
            .with_exec(["sh", "-c", f"echo {nonce} > /cache/stamp"])
        )
        await writer.sync()
    # A second connection (sync facade this time) sees what the first one left in the volume.
    with dirk.Connection(config(engine, tmp_path)) as client:
        reader = (
            client.container()
            .from_(busybox_ref)
            .with_mounted_cache("/cache", client.cache_volume(volume))
            .with_exec(["cat", "/cache/stamp"])
        )
        assert reader.stdout() == f"{nonce}\n"
        # The volume is not part of the container's filesystem.
        other = client.container().from_(busybox_ref).with_exec(["ls", "/"])
        assert "cache" not in other.stdout().split()


def test_log_output_gets_each_step_with_its_output_and_time(
    engine: RunningEngine, busybox_ref: str, tmp_path: Path
) -> None:
    log = io.StringIO()
    value = uuid.uuid4().hex
    with dirk.Connection(config(engine, tmp_path, log_output=log)) as client:
        ctr = (
            client.container()
            .from_(busybox_ref)
            .with_env_variable("TOKEN", value)
            .with_exec(["sh", "-c", "echo $TOKEN | wc -c"])
        )
        assert ctr.stdout() == "33\n"
        assert ctr.exit_code() == 0
        with pytest.raises(ExecError):
            ctr.with_exec(["false"]).sync()
    lines = log.getvalue().splitlines()
    assert re.fullmatch(r"dirk: session open on unix://\S+ \(\d+ ms\)", lines[0]), lines
    steps = [re.sub(r"\d+\.\ds", "Xs", line) for line in lines[1:]]
    exec_line = next(
        i for i, line in enumerate(steps) if line.endswith("] sh -c 'echo $TOKEN | wc -c'")
    )
    n = steps[exec_line].split("]")[0] + "]"
    assert steps[exec_line + 1 :][:2] == [f"{n} sh -c 'echo $TOKEN | wc -c'  | 33", f"{n} DONE Xs"]
    failed = [line for line in steps if "] ERROR" in line]
    assert len(failed) == 1 and "false" in steps[steps.index(failed[0]) - 1], steps
    assert steps[-1].startswith("[dirk] "), steps
    assert value not in log.getvalue(), "variable values are not part of step names"


@pytest.mark.anyio
async def test_async_leaves_run_concurrently(
    engine: RunningEngine, busybox_ref: str, tmp_path: Path
) -> None:
    nonce = uuid.uuid4().hex[:8]
    results: dict[int, str] = {}
    async with dirk.Connection(config(engine, tmp_path)) as client:
        meeting = client.cache_volume(f"meeting-{nonce}")
        base = client.container().from_(busybox_ref).with_mounted_cache("/meet", meeting)

        async def run(i: int) -> None:
            # Each step waits (up to 60 s) until all four are in: only steps running at
            # the same time can all finish.
            script = (
                f"touch /meet/{i}; n=0; while [ $(ls /meet | wc -l) -lt 4 ]; do "
                "sleep 0.05; n=$((n+1)); [ $n -gt 1200 ] && exit 7; done; "
                f"echo {nonce}-{i}"
            )
            results[i] = await base.with_exec(["sh", "-c", script]).stdout()

        async with anyio.create_task_group() as group:
            for i in range(4):
                group.start_soon(run, i)
    assert results == {i: f"{nonce}-{i}\n" for i in range(4)}


def test_dagger_entry_dag_in_both_modes(
    engine: RunningEngine, busybox_ref: str, tmp_path: Path
) -> None:
    """Dagger's `connection()` + global `dag`, sync and async, on one real engine; `with_` and
    `await obj` as Dagger's SDK has them."""
    nonce = uuid.uuid4().hex[:8]

    def tagged(ctr: dirk.Container[dirk.Either]) -> dirk.Container[dirk.Either]:
        return ctr.with_env_variable("NONCE", nonce)

    built = dirk.dag.container().from_(busybox_ref).with_(tagged)  # before any block: lazy
    with dirk.connection(config(engine, tmp_path)):
        assert built.with_exec(["sh", "-c", 'echo "sync $NONCE"']).stdout() == f"sync {nonce}\n"

    async def main() -> str:
        async with dirk.connection(config(engine, tmp_path)):
            synced = await built.with_exec(["sh", "-c", 'echo "$NONCE" > /n'])
            contents: str = await synced.file("/n").contents()
            return contents

    assert anyio.run(main) == f"{nonce}\n"
