"""`withExec(redirectStdin:)`: a file of the container as the command's standard input."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import dirk
from dirk.errors import InvalidArgumentError, SnapshotPathError
from tests.integration.sdk_engine import RunningEngine, foreground_engine

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def engine() -> Iterator[RunningEngine]:
    yield from foreground_engine()


@pytest.fixture
def base(
    engine: RunningEngine, tmp_path: Path, registry: str
) -> Iterator[dirk.Container[dirk.Sync]]:
    with dirk.Connection(dirk.Config(engine=engine.socket_url, workdir=tmp_path)) as client:
        yield client.container().from_(f"{registry}/busybox:latest")


def test_a_file_of_the_container_is_the_commands_stdin(base: dirk.Container[dirk.Sync]) -> None:
    made = base.with_workdir("/work").with_exec(["sh", "-c", "printf 'one\\ntwo\\n' > in.txt"])
    assert made.with_exec(["wc", "-l"], redirect_stdin="in.txt").stdout().strip() == "2"
    assert made.with_exec(["cat"], redirect_stdin="/work/in.txt").stdout() == "one\ntwo\n"


def test_a_missing_stdin_file_is_named(base: dirk.Container[dirk.Sync]) -> None:
    with pytest.raises(SnapshotPathError, match=r"/nope: no such file or directory"):
        base.with_exec(["cat"], redirect_stdin="/nope").sync()


def test_stdin_and_redirect_stdin_together_are_refused(base: dirk.Container[dirk.Sync]) -> None:
    with pytest.raises(InvalidArgumentError, match="not both"):
        base.with_exec(["cat"], stdin="x", redirect_stdin="/etc/passwd").sync()
