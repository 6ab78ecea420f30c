"""Dagger's entry points and helpers in dirk's SDK, against a fake engine: `dirk.connection()` with
the global `dag` (async and sync), `with_`, `await obj`, and the `TypeError` for a string
where a list of strings goes."""

from __future__ import annotations

import threading

import anyio
import pytest

import dirk
from dirk import dag
from dirk.errors import ClientConnectionError, DirkError, ImageNotFoundError

from .sdk_fake_engine import FakeEngine, use_fake_engine

ECHO = '{ container { from(address: "alpine") { withExec(args: ["echo", "hi"]) { stdout } } } }'
ENDED = ["closed", "transport closed"]


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> FakeEngine:
    return use_fake_engine(monkeypatch)


def echo(client: dirk.Client[dirk.M]) -> dirk.Container[dirk.M]:
    return client.container().from_("alpine").with_exec(["echo", "hi"])


def test_async_connection_drives_the_global_dag(engine: FakeEngine) -> None:
    async def main() -> str:
        async with dirk.connection() as client:
            assert client is dag  # type: ignore[comparison-overlap]  # typed by the block's mode
            stdout: str = await echo(client).stdout()
            return stdout

    assert anyio.run(main) == "hi\n"
    assert engine.queries == [ECHO]
    assert engine.opened[-2:] == ENDED


def test_sync_connection_drives_the_same_dag(engine: FakeEngine) -> None:
    with dirk.connection():
        assert dirk.dag.container().from_("alpine").with_exec(["echo", "hi"]).stdout() == "hi\n"
    assert engine.queries == [ECHO]
    assert engine.opened[-2:] == ENDED


def test_objects_built_before_the_block_run_inside_it(engine: FakeEngine) -> None:
    built = echo(dag)  # lazy: nothing to run yet, as in Dagger
    with dirk.connection():
        assert built.stdout() == "hi\n"
    with pytest.raises(ClientConnectionError, match=r"dirk\.dag is not connected"):
        built.stdout()


def test_dag_outside_a_block_names_the_fix() -> None:
    with pytest.raises(ClientConnectionError, match=r"dirk\.connection\(\)"):
        dag.version()


def test_one_connection_block_at_a_time(engine: FakeEngine) -> None:
    with dirk.connection(), pytest.raises(DirkError, match="already open"), dirk.connection():
        pass
    assert engine.opened[-2:] == ENDED  # the refused block ended its own session too
    with dirk.connection():  # and dag is free again
        assert dag.container().from_("alpine").with_exec(["echo", "hi"]).stdout() == "hi\n"


def test_dag_objects_mix_as_arguments(engine: FakeEngine) -> None:
    with dirk.connection():
        src = dag.host().directory("src")
        ctr = dag.container().from_("alpine").with_directory("/src", src)
        assert ctr.with_exec(["echo", "hi"]).stdout() == "hi\n"
    assert (
        "withDirectory" in engine.queries[-1]
        and 'source: "id-host.directory' in (engine.queries[-1])
    )


def test_dag_serves_the_block_from_another_thread(engine: FakeEngine) -> None:
    results: list[str] = []
    with dirk.connection():
        worker = threading.Thread(target=lambda: results.append(echo(dag).stdout()))
        worker.start()
        worker.join(10)
    assert results == ["hi\n"]


def test_with_applies_a_reusable_step_in_the_chain(engine: FakeEngine) -> None:
    def greeting(ctr: dirk.Container[dirk.M]) -> dirk.Container[dirk.M]:
        return ctr.with_env_variable("GREETING", "hi")

    with dirk.Connection() as client:
        ctr = client.container().from_("alpine").with_(greeting).with_exec(["echo", "hi"])
        assert ctr.stdout() == "hi\n"
        assert client.directory().with_(lambda d: d.with_new_file("a", "b")) is not None
    assert 'withEnvVariable(name: "GREETING", value: "hi")' in engine.queries[0]


def test_awaiting_an_object_syncs_it(engine: FakeEngine) -> None:
    async def main() -> dirk.Container[dirk.Either]:
        async with dirk.connection():
            return await echo(dag)

    synced = anyio.run(main)
    assert isinstance(synced, dirk.Container)
    assert engine.queries == [
        '{ container { from(address: "alpine") { withExec(args: ["echo", "hi"]) { sync } } } }'
    ]


def test_awaiting_an_object_of_a_sync_block_is_a_type_error(engine: FakeEngine) -> None:
    with dirk.Connection() as client:
        ctr = client.container()

        async def wait() -> None:
            await ctr  # type: ignore[misc]  # mypy rejects it too

        with pytest.raises(TypeError, match=r"call \.sync\(\)"):
            anyio.run(wait)
    assert engine.queries == []


def test_a_string_for_a_list_of_strings_is_a_type_error_showing_the_fix(
    engine: FakeEngine,
) -> None:
    with dirk.Connection() as client:
        ctr = client.container().from_("alpine")
        with pytest.raises(TypeError) as caught:
            ctr.with_exec("echo hi")  # type: ignore[arg-type]
        message = str(caught.value)
        assert "args is a list of strings" in message
        assert 'with_exec(["sh", "-c", "echo hi"])' in message
        with pytest.raises(TypeError, match=r"args\[1\] is 2 \(int\)"):
            ctr.with_exec(["sleep", 2])  # type: ignore[list-item]
        with pytest.raises(TypeError, match=r"exclude=\['\*\.log'\]"):
            client.host().directory(".", exclude="*.log")  # type: ignore[arg-type]
        assert ctr.with_exec(("echo", "hi")).stdout() == "hi\n"  # type: ignore[arg-type]
    assert engine.queries == [ECHO]  # nothing wrong was sent


def test_lists_of_input_objects_are_checked_by_their_type(engine: FakeEngine) -> None:
    """Input object types are named to the check (their module loads when a program builds
    one): a list of them is sent, anything else is refused naming the type."""
    with dirk.Connection() as client:
        ctx = client.directory()
        built = ctx.docker_build(build_args=[dirk.BuildArg(name="V", value="1")])
        assert isinstance(built, dirk.Container)
        with pytest.raises(TypeError, match="build_args is a list of BuildArg objects"):
            ctx.docker_build(build_args=dirk.BuildArg(name="V", value="1"))  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"ports\[0\] is 8080 \(int\)"):
            client.container().as_service().up(ports=[8080])  # type: ignore[list-item]
        assert ctx.docker_build(build_args=[]) is not None
    assert engine.queries == []


def test_platform_is_a_str_scalar(engine: FakeEngine) -> None:
    engine.leaves["defaultPlatform"] = "linux/amd64"
    with dirk.Connection() as client:
        platform = client.default_platform()
        assert isinstance(platform, dirk.Platform) and platform == "linux/amd64"
        assert client.container(platform=dirk.Platform("linux/amd64")) is not None


def test_typed_errors_arrive_through_dag(engine: FakeEngine) -> None:
    engine.errors["from"] = {
        "message": "no tag 'nope' in repository alpine",
        "extensions": {"_type": "IMAGE_NOT_FOUND"},
    }
    with dirk.connection(), pytest.raises(ImageNotFoundError, match="no tag 'nope'"):
        dag.container().from_("alpine:nope").with_exec(["true"]).stdout()


def test_a_dag_object_reused_in_a_later_block_gets_a_fresh_id(engine: FakeEngine) -> None:
    src = dag.directory()
    with dirk.connection():
        first = src.id()
        assert src.id() == first  # asked once per session
    with dirk.connection():
        dag.container().with_directory("/src", src).stdout()
    id_queries = [q for q in engine.queries if q == "{ directory { id } }"]
    assert len(id_queries) == 2  # the first session's ID is not sent to the second
    assert first not in engine.queries[-1]
