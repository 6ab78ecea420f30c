"""The SDK's async and blocking faces over one implementation, against a fake engine."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import anyio
import pytest

import dirk
from dirk.errors import ClientConnectionError, ExecError

from .sdk_fake_engine import FakeEngine, use_fake_engine

#: What leaving a connection's block does: the session ends, then its HTTP client closes.
ENDED = ["closed", "transport closed"]
ECHO = '{ container { from(address: "alpine") { withExec(args: ["echo", "hi"]) { stdout } } } }'


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> FakeEngine:
    return use_fake_engine(monkeypatch)


def test_async_leaf_returns_awaitable_value(engine: FakeEngine) -> None:
    async def main() -> str:
        async with dirk.Connection() as client:
            ctr = client.container().from_("alpine").with_exec(["echo", "hi"])
            assert engine.queries == []  # chaining is lazy
            return await ctr.stdout()

    assert anyio.run(main) == "hi\n"
    assert engine.queries == [ECHO]
    assert engine.opened[-2:] == ENDED


def test_sync_leaf_blocks_and_returns_value(engine: FakeEngine) -> None:
    with dirk.Connection() as client:
        ctr = client.container().from_("alpine").with_exec(["echo", "hi"])
        assert ctr.stdout() == "hi\n"
        assert ctr.exit_code() == 0
    assert engine.queries[0] == ECHO
    assert engine.opened[-2:] == ENDED


def test_objects_are_immutable_and_shareable(engine: FakeEngine) -> None:
    with dirk.Connection() as client:
        base = client.container().from_("alpine")
        one = base.with_exec(["echo", "1"])
        two = base.with_exec(["echo", "2"])
        one.stdout()
        two.stdout()
        base.with_env_variable("A", "b").stdout()
    assert '"1"' in engine.queries[0] and '"2"' not in engine.queries[0]
    assert '"2"' in engine.queries[1] and '"1"' not in engine.queries[1]
    assert "withExec" not in engine.queries[2]


def test_object_argument_is_sent_as_its_id_fetched_once(engine: FakeEngine) -> None:
    with dirk.Connection() as client:
        src = client.host().directory(".")
        ctr = client.container().from_("alpine").with_mounted_directory("/src", src)
        ctr.stdout()
        ctr.with_exec(["ls"]).stdout()
    id_queries = [q for q in engine.queries if q.endswith("{ id } } } }") or "{ id }" in q]
    assert id_queries == ['{ host { directory(path: ".") { id } } }']
    assert 'withMountedDirectory(path: "/src", source: "id-host.directory-1")' in engine.queries[1]
    assert len(engine.queries) == 3


def test_sync_reloads_object_from_its_id(engine: FakeEngine) -> None:
    async def main() -> str:
        async with dirk.Connection() as client:
            ctr = await client.container().from_("alpine").sync()
            return await ctr.stdout()

    assert anyio.run(main) == "hi\n"
    assert engine.queries[0] == '{ container { from(address: "alpine") { sync } } }'
    assert engine.queries[1] == (
        '{ node(id: "id-container.from-1") { ... on Container { stdout } } }'
    )


def test_object_list_fetches_fields_in_one_query(engine: FakeEngine) -> None:
    with dirk.Connection() as client:
        variables = client.container().from_("alpine").env_variables()
        assert [(v.name(), v.value()) for v in variables] == [("PATH", "/bin")]
        assert variables[0].id() == "ev-1"
    assert engine.queries == [
        '{ container { from(address: "alpine") { envVariables { id name value } } } }'
    ]


def test_exec_error_carries_command_and_output(engine: FakeEngine) -> None:
    engine.errors["stdout"] = {
        "message": 'process "false" did not complete successfully: exit code: 1',
        "extensions": {
            "_type": "EXEC_ERROR",
            "cmd": ["false"],
            "exitCode": 1,
            "stdout": "out\n",
            "stderr": "boom\n",
        },
    }
    with dirk.Connection() as client, pytest.raises(ExecError) as caught:
        client.container().from_("alpine").with_exec(["false"]).stdout()
    assert caught.value.exit_code == 1
    assert caught.value.command == ["false"]
    assert caught.value.stderr == "boom\n"
    assert "boom" in str(caught.value)
    assert caught.value.path == ["container", "from", "withExec", "stdout"]


def test_objects_fail_clearly_after_the_block(engine: FakeEngine) -> None:
    with dirk.Connection() as client:
        ctr = client.container().from_("alpine")
    with pytest.raises(ClientConnectionError, match="closed"):
        ctr.stdout()

    async def main() -> None:
        async with dirk.Connection() as client:
            actr = client.container().from_("alpine")
        with pytest.raises(ClientConnectionError, match="closed"):
            await actr.stdout()

    anyio.run(main)


def test_log_output_gets_the_plain_step_stream(engine: FakeEngine) -> None:
    engine.events = [
        {"type": "step", "id": "a1", "state": "running", "name": "from alpine", "at": 1.0},
        {"type": "step", "id": "a1", "state": "done", "name": "from alpine", "at": 1.5},
        {"type": "step", "id": "b2", "state": "running", "name": "echo hi", "at": 1.5},
        {"type": "output", "id": "b2", "stream": "stdout", "data": "hi\n", "at": 1.6},
        {"type": "step", "id": "b2", "state": "done", "name": "echo hi", "at": 2.0},
    ]
    log = io.StringIO()
    with dirk.Connection(dirk.Config(log_output=log)) as client:
        client.set_secret("token", "s3cret").plaintext  # noqa: B018 - lazy, sends nothing
        client.container().from_("alpine").with_env_variable("K", "s3cret").stdout()
    lines = log.getvalue().splitlines()
    assert lines[0].startswith("dirk: session open on http://fake-engine")
    assert lines[1:] == [
        "[1] from alpine",
        "[1] DONE 0.5s",
        "[2] echo hi",
        "[2] echo hi  | hi",
        "[2] DONE 0.5s",
        "[dirk] 2 steps: 2 run, 0 cached; 1.0s in all",
    ]
    assert "s3cret" not in log.getvalue()


def test_progress_is_checked_and_off_by_default(engine: FakeEngine) -> None:
    with pytest.raises(ValueError, match="must be one of auto, tty"):
        dirk.Config(progress="fancy")
    engine.events = [{"type": "step", "id": "a", "state": "running", "name": "x", "at": 1.0}]
    with dirk.Connection() as client:  # no log_output, no progress: nothing subscribes
        client.container().from_("alpine").stdout()
    assert engine.watched == 0
    with dirk.Connection(dirk.Config(progress="plain")):
        pass
    assert engine.watched == 1


def test_importing_the_sdk_imports_no_progress_view() -> None:
    code = "import sys, dirk; print(sorted(m for m in sys.modules if m.startswith('rich')))"
    shown = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert shown.strip() == "[]"


def test_concurrent_leaves_in_async_mode(engine: FakeEngine) -> None:
    async def main() -> list[str]:
        results: list[str] = []
        async with dirk.Connection() as client:
            base = client.container().from_("alpine")

            async def run(i: int) -> None:
                results.append(await base.with_exec(["echo", str(i)]).stdout())

            async with anyio.create_task_group() as group:
                for i in range(10):
                    group.start_soon(run, i)
        return results

    assert anyio.run(main) == ["hi\n"] * 10
    assert len(engine.queries) == 10


def test_object_loaded_from_an_id_is_passed_without_asking_its_id(engine: FakeEngine) -> None:
    with dirk.Connection() as client:
        src = client.load_directory_from_id("dir-7")
        client.container().with_rootfs(src).stdout()
    assert engine.queries == ['{ container { withRootfs(directory: "dir-7") { stdout } } }']


def test_config_rejects_a_non_positive_timeout() -> None:
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        dirk.Config(timeout=0)


# --- leaving a block early: Ctrl-C, cancellation, failures -----------------------------------


@pytest.fixture
def ctrl_c_soon() -> Iterator[None]:
    """Delivers SIGINT to the main thread 0.2 s into the test, as Ctrl-C at a terminal does."""
    timer = threading.Timer(
        0.2, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT)
    )
    timer.start()
    yield
    timer.cancel()


def test_ctrl_c_during_a_sync_query_abandons_it_and_ends_the_session(
    engine: FakeEngine, ctrl_c_soon: None
) -> None:
    engine.delay = 30  # a long pipeline
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt), dirk.Connection() as client:
        client.container().from_("alpine").with_exec(["sleep", "30"]).stdout()
    assert time.monotonic() - started < 5
    assert engine.abandoned == 1  # the query does not go on in the background
    assert engine.opened[-2:] == ENDED


def test_ctrl_c_while_connecting_returns_at_once(engine: FakeEngine, ctrl_c_soon: None) -> None:
    engine.open_delay = 30  # e.g. an engine being started
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt), dirk.Connection():
        pass
    assert time.monotonic() - started < 5


def test_cancelled_async_block_still_ends_the_session(engine: FakeEngine) -> None:
    async def main() -> None:
        with anyio.move_on_after(0.1):
            async with dirk.Connection() as client:
                await client.container().from_("alpine").with_exec(["true"]).sync()
                await anyio.sleep(30)

    anyio.run(main)
    assert engine.opened[-2:] == ENDED


def test_failure_right_after_opening_ends_the_session(engine: FakeEngine) -> None:
    class FullDisk(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError(28, "No space left on device")

    with (
        pytest.raises(OSError, match="No space"),
        dirk.Connection(dirk.Config(log_output=FullDisk())),
    ):
        pass
    assert engine.opened[-2:] == ENDED
