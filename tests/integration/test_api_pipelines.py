"""GraphQL pipelines end to end through the API layer: a real engine (registry, containers,
cache) driven with graphql-core directly, the way the wire server does it, minus HTTP."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from dirk.engine import EngineCore
from dirk.engine.sessions import Session, SessionRegistry
from dirk.errors import ExecError
from dirk.wire.errors import format_error
from tests.integration.schema_client import SchemaClient

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


class Client(SchemaClient):
    """One session (a fresh one in `workdir` unless given), querying the schema the way the
    wire server does."""

    def __init__(self, engine: EngineCore, workdir: Path, session: Session | None = None) -> None:
        super().__init__(engine, session or Session("token", workdir, {}, time.time()))


@pytest.fixture
def client(engine: EngineCore, workdir: Path) -> Client:
    return Client(engine, workdir)


def last(data: Any, key: str) -> Any:
    """The innermost object under repeated `key` levels."""
    while isinstance(data, dict) and key in data:
        data = data[key]
    return data


async def test_from_with_exec_stdout(client: Client, busybox_ref: str) -> None:
    data = await client.data(
        "query($image: String!) { container { from(address: $image) {"
        ' withExec(args: ["sh", "-c", "echo hello; echo oops >&2"]) { stdout stderr exitCode }'
        " } } }",
        image=busybox_ref,
    )
    assert data["container"]["from"]["withExec"] == {
        "stdout": "hello\n",
        "stderr": "oops\n",
        "exitCode": 0,
    }


async def test_env_workdir_user_and_image_config(client: Client, python_ref: str) -> None:
    data = await client.data(
        "query($image: String!, $script: String!) { container { from(address: $image) {"
        ' withEnvVariable(name: "GREETING", value: "hi") { withWorkdir(path: "/srv") {'
        ' withUser(name: "nobody") {'
        ' withExec(args: ["sh", "-c", $script]) { stdout } } } } } } }',
        image=python_ref,
        script="echo $GREETING $LANG; pwd; id -u; python -c 'print(6*7)'",
    )
    out = data["container"]["from"]["withEnvVariable"]["withWorkdir"]["withUser"]["withExec"]
    assert out["stdout"] == "hi C.UTF-8\n/srv\n65534\n42\n"


async def test_host_directory_mounted_and_written_back(
    client: Client, busybox_ref: str, workdir: Path
) -> None:
    (workdir / "src").mkdir()
    (workdir / "src" / "a.txt").write_text("from the host\n")
    src = (await client.data('{ host { directory(path: "src") { id } } }'))["host"]["directory"]
    data = await client.data(
        "query($image: String!, $src: ID!) { container { from(address: $image) {"
        ' withMountedDirectory(path: "/src", source: $src) {'
        ' withExec(args: ["sh", "-c", "cat /src/a.txt; echo new > /src/b.txt"]) {'
        ' stdout withExec(args: ["cat", "/src/b.txt"]) { stdout }'
        ' directory(path: "/src") { entries } } } } } }',
        image=busybox_ref,
        src=src["id"],
    )
    exec1 = data["container"]["from"]["withMountedDirectory"]["withExec"]
    assert exec1["stdout"] == "from the host\n"
    assert exec1["withExec"]["stdout"] == "new\n"
    assert exec1["directory"]["entries"] == ["a.txt", "b.txt"]
    assert not (workdir / "src" / "b.txt").exists()  # the host is only read


async def test_cache_volume_is_shared_by_two_execs(
    client: Client, busybox_ref: str, engine: EngineCore
) -> None:
    token = str(time.time_ns())
    query = (
        "query($image: String!, $script: String!) { container { from(address: $image) {"
        ' withMountedCache(path: "/cache", cache: CACHE) {'
        ' withExec(args: ["sh", "-c", $script]) { stdout } } } } }'
    )
    cache = (await client.data('{ cacheVolume(key: "api-test") { id } }'))["cacheVolume"]["id"]
    query = query.replace("CACHE", f'"{cache}"')
    await client.data(query, image=busybox_ref, script=f"echo {token} > /cache/token")
    data = await client.data(query, image=busybox_ref, script="cat /cache/token")
    assert last(data["container"]["from"], "withMountedCache")["withExec"]["stdout"] == token + "\n"
    assert engine.solver.counters.execs == 2


async def test_exit_code_with_expect_any(client: Client, busybox_ref: str) -> None:
    data = await client.data(
        "query($image: String!) { container { from(address: $image) {"
        ' withExec(args: ["sh", "-c", "echo partial; exit 3"], expect: ANY) { exitCode stdout }'
        " } } }",
        image=busybox_ref,
    )
    assert data["container"]["from"]["withExec"] == {"exitCode": 3, "stdout": "partial\n"}


async def test_exec_error_keeps_its_type_and_extensions(client: Client, busybox_ref: str) -> None:
    result = await client.run(
        "query($image: String!) { container { from(address: $image) {"
        ' withExec(args: ["sh", "-c", "echo out; echo err >&2; exit 5"]) { stdout } } } }',
        image=busybox_ref,
    )
    assert result.errors is not None and result.data is None
    error = result.errors[0]
    assert isinstance(error.original_error, ExecError)
    formatted = format_error(error)
    assert formatted["path"] == ["container", "from", "withExec", "stdout"]
    assert "exit code: 5" in formatted["message"]
    assert formatted["extensions"] == {
        "_type": "EXEC_ERROR",
        "cmd": ["sh", "-c", "echo out; echo err >&2; exit 5"],
        "exitCode": 5,
        "stdout": "out\n",
        "stderr": "err\n",
    }


async def test_files_contents_entries_and_size(client: Client, busybox_ref: str) -> None:
    data = await client.data(
        "query($image: String!) { container { from(address: $image) {"
        ' withNewFile(path: "/data/one.txt", contents: "one\\ntwo\\n") {'
        ' withExec(args: ["sh", "-c", "mkdir /data/sub; printf 12345 > /data/n"],'
        ' redirectStdout: "/data/log") {'
        ' directory(path: "/data") { entries file(path: "one.txt") { contents name size } }'
        ' file(path: "/data/n") { size contents } } } } } }',
        image=busybox_ref,
    )
    node = data["container"]["from"]["withNewFile"]["withExec"]
    assert node["directory"]["entries"] == ["log", "n", "one.txt", "sub/"]
    assert node["directory"]["file"] == {"contents": "one\ntwo\n", "name": "one.txt", "size": 8}
    assert node["file"] == {"size": 5, "contents": "12345"}


async def test_redirected_output_lands_in_files(client: Client, busybox_ref: str) -> None:
    data = await client.data(
        'query($image: String!) { container { from(address: $image) { withWorkdir(path: "/w") {'
        ' withExec(args: ["sh", "-c", "echo to-out; echo to-err >&2"],'
        ' redirectStdout: "out.txt", redirectStderr: "/w/err.txt") {'
        ' stdout withExec(args: ["cat", "out.txt", "err.txt"]) { stdout } } } } } }',
        image=busybox_ref,
    )
    node = data["container"]["from"]["withWorkdir"]["withExec"]
    assert node["stdout"] == "to-out\n"
    assert node["withExec"]["stdout"] == "to-out\nto-err\n"


async def test_ids_round_trip_through_node_and_load(client: Client, busybox_ref: str) -> None:
    ctr = await client.data(
        "query($image: String!) { container { from(address: $image) {"
        ' withExec(args: ["echo", "again"]) { id } } } }',
        image=busybox_ref,
    )
    ctr_id = ctr["container"]["from"]["withExec"]["id"]
    data = await client.data(
        "query($id: ID!) { node(id: $id) { ... on Container { stdout } }"
        " loadContainerFromID(id: $id) { exitCode sync } }",
        id=ctr_id,
    )
    assert data["node"] == {"stdout": "again\n"}
    assert data["loadContainerFromID"] == {"exitCode": 0, "sync": ctr_id}


async def test_the_same_chain_twice_executes_once(
    client: Client, busybox_ref: str, engine: EngineCore
) -> None:
    query = (
        "query($image: String!) { container { from(address: $image) {"
        ' withExec(args: ["sh", "-c", "echo $RANDOM"]) { stdout } } } }'
    )
    first = await client.data(query, image=busybox_ref)
    second = await client.data(query, image=busybox_ref)
    assert first == second  # the same $RANDOM: the step did not run again
    assert engine.solver.counters.execs == 1


async def test_concurrent_requests_of_one_session_share_work(
    client: Client, busybox_ref: str, engine: EngineCore
) -> None:
    query = (
        "query($image: String!) { container { from(address: $image) {"
        ' withExec(args: ["sh", "-c", "sleep 0.2; echo done"]) { stdout exitCode } } } }'
    )
    results: list[Any] = []

    async def one() -> None:
        results.append(await client.data(query, image=busybox_ref))

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(one)
    assert all(r == results[0] for r in results)
    assert engine.solver.counters.execs == 1


async def test_missing_host_directory_is_a_clear_error(client: Client, workdir: Path) -> None:
    result = await client.run('{ host { directory(path: "missing") { id } } }')
    assert result.errors is not None
    assert str(workdir / "missing") in result.errors[0].message


async def test_mounted_file_temp_and_owned_directory(
    client: Client, busybox_ref: str, workdir: Path
) -> None:
    (workdir / "conf.ini").write_text("k=v\n")
    (workdir / "tree").mkdir()
    (workdir / "tree" / "x").write_text("x")
    ids = await client.data(
        '{ host { file(path: "conf.ini") { id } directory(path: "tree") { id } } }'
    )
    script = (
        "cat /etc/app.ini; stat -c %u /owned/x; df -P /scratch | tail -1 | cut -c1-5;"
        " echo more >> /etc/app.ini"
    )
    data = await client.data(
        "query($image: String!, $f: ID!, $d: ID!, $s: String!) { container {"
        " from(address: $image) {"
        ' withMountedFile(path: "/etc/app.ini", source: $f) {'
        ' withMountedDirectory(path: "/owned", source: $d, owner: "dirk") {'
        ' withMountedTemp(path: "/scratch") {'
        ' withExec(args: ["sh", "-c", $s]) { stdout file(path: "/etc/app.ini") { contents } }'
        " } } } } } }",
        image=busybox_ref,
        f=ids["host"]["file"]["id"],
        d=ids["host"]["directory"]["id"],
        s=script,
    )
    node = data["container"]["from"]["withMountedFile"]["withMountedDirectory"]
    out = node["withMountedTemp"]["withExec"]
    assert out["stdout"] == "k=v\n1000\ntmpfs\n"
    assert out["file"]["contents"] == "k=v\nmore\n"


async def test_with_directory_from_the_host_with_filters(
    client: Client, busybox_ref: str, workdir: Path
) -> None:
    for name in ("a.py", "b.pyc", "sub/c.py"):
        (workdir / name).parent.mkdir(parents=True, exist_ok=True)
        (workdir / name).write_text(name)
    src = (await client.data('{ host { directory(path: ".") { id } } }'))["host"]["directory"]
    data = await client.data(
        "query($image: String!, $src: ID!) { container { from(address: $image) {"
        ' withDirectory(path: "/code", source: $src, exclude: ["*.pyc"]) {'
        ' withExec(args: ["find", "/code", "-type", "f"]) { stdout } } } } }',
        image=busybox_ref,
        src=src["id"],
    )
    out = data["container"]["from"]["withDirectory"]["withExec"]["stdout"]
    assert sorted(out.split()) == ["/code/a.py", "/code/sub/c.py"]


async def test_sync_of_a_failing_exec_raises_the_exec_error(
    client: Client, busybox_ref: str
) -> None:
    scratch = (await client.data("{ directory { id } }"))["directory"]["id"]
    result = await client.run(
        "query($image: String!, $d: ID!) { container { from(address: $image) {"
        ' withMountedDirectory(path: "/m", source: $d) {'
        ' withExec(args: ["sh", "-c", "exit 9"]) { sync } } } } }',
        image=busybox_ref,
        d=scratch,
    )
    assert result.errors is not None
    assert isinstance(result.errors[0].original_error, ExecError)
    assert format_error(result.errors[0])["extensions"]["exitCode"] == 9


async def test_ending_a_session_leaves_its_shared_exec_running_for_another_waiting_on_it(
    engine: EngineCore, workdir: Path, busybox_ref: str
) -> None:
    registry = SessionRegistry()
    first = Client(engine, workdir, registry.create(workdir, {}))
    second = Client(engine, workdir, registry.create(workdir, {}))
    query = (
        "query($image: String!) { container { from(address: $image) {"
        ' withExec(args: ["sh", "-c", "sleep 1; echo done"]) { stdout } } } }'
    )
    solver = engine.solver
    running = asyncio.create_task(first.run(query, image=busybox_ref))
    first.session.track(running)
    with anyio.fail_after(30):
        while solver.counters.execs < 1:  # the first session's exec is running
            await anyio.sleep(0.01)
    waiting = asyncio.create_task(second.data(query, image=busybox_ref))
    with anyio.fail_after(5):
        while solver.counters.joined < 1:  # the second session waits for that run
            await anyio.sleep(0.01)
    await registry.end(first.session.token)
    with pytest.raises(asyncio.CancelledError):
        await running
    data = await waiting
    assert last(data["container"], "from")["withExec"]["stdout"] == "done\n"
    assert solver.counters.execs == 1, "the exec ran again after the first session ended"
    overlays = [
        line
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if " - overlay " in line and str(engine.layout.run) in line
    ]
    assert overlays == [], "the cancelled exec left its overlays mounted"
