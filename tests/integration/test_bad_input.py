"""Arguments that can never be valid are refused by name, as a careless user would send them.

Before, a NUL byte silently cut an exec argument, an env name or a workdir; `A=B` and `""`
went through as env names; an out-of-range mode logged an OverflowError traceback; negative
line offsets answered ""; and a 10 MB env value failed as `exit code: 1` with the runtime's
"Argument list too long" hidden in stderr.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import dirk
from dirk.errors import ExecError, InvalidArgumentError
from tests.integration.sdk_engine import RunningEngine, foreground_engine

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def engine() -> Iterator[RunningEngine]:
    yield from foreground_engine()


@pytest.fixture
def client(engine: RunningEngine, tmp_path: Path) -> Iterator[dirk.Client[dirk.Sync]]:
    with dirk.Connection(dirk.Config(engine=engine.socket_url, workdir=tmp_path)) as c:
        yield c


@pytest.fixture
def base(client: dirk.Client[dirk.Sync], registry: str) -> dirk.Container[dirk.Sync]:
    return client.container().from_(f"{registry}/busybox:latest")


def refused(call: object) -> str:
    """The message of the error `call()` raises; it must be a refusal of the argument."""
    with pytest.raises((InvalidArgumentError, dirk.errors.QueryError)) as caught:
        call()  # type: ignore[operator]
    assert not isinstance(caught.value, ExecError), "refused only once it ran"
    return str(caught.value)


def test_nul_bytes_are_refused_where_they_would_cut_a_value(
    base: dirk.Container[dirk.Sync],
) -> None:
    message = refused(lambda: base.with_exec(["echo", "a\0b"]).stdout())
    assert "withExec(args:)" in message and "NUL" in message
    message = refused(lambda: base.with_env_variable("A\0B", "v").with_exec(["env"]).stdout())
    assert "withEnvVariable(name:)" in message
    message = refused(lambda: base.with_env_variable("A", "v\0w").with_exec(["env"]).stdout())
    assert "withEnvVariable(value:)" in message
    message = refused(lambda: base.with_workdir("/tmp\0/x").with_exec(["pwd"]).stdout())
    assert "withWorkdir(path:)" in message


def test_env_names_with_equals_or_empty_are_refused(base: dirk.Container[dirk.Sync]) -> None:
    message = refused(lambda: base.with_env_variable("A=B", "v").with_exec(["env"]).stdout())
    assert "'A=B'" in message and "=" in message
    message = refused(lambda: base.with_env_variable("", "v").with_exec(["env"]).stdout())
    assert "needs a name" in message


def test_modes_outside_twelve_bits_are_refused_without_a_traceback(
    engine: RunningEngine, base: dirk.Container[dirk.Sync]
) -> None:
    for mode in (2147483647, -1, 0o10000):
        message = refused(lambda m=mode: base.with_new_file("/f", "x", permissions=m).sync())  # type: ignore[misc]
        assert "withNewFile(permissions:)" in message and "0o7777" in message
    assert "Traceback" not in engine.log.read_text()
    # The edge values are fine.
    assert base.with_new_file("/f", "x", permissions=0o7777).file("/f").contents() == "x"


def test_negative_line_offsets_and_limits_are_refused(base: dirk.Container[dirk.Sync]) -> None:
    file = base.with_new_file("/f", "1\n2\n3\n").file("/f")
    assert "offsetLines:" in refused(lambda: file.contents(offset_lines=-1))
    assert "limitLines:" in refused(lambda: file.contents(limit_lines=-2))
    assert file.contents(offset_lines=1, limit_lines=1) == "2\n"


def test_a_too_large_environment_names_the_kernel_limit(base: dirk.Container[dirk.Sync]) -> None:
    huge = "x" * (10 * 1024 * 1024)
    with pytest.raises(dirk.errors.QueryError) as caught:
        base.with_env_variable("BIG", huge).with_exec(["true"]).sync()
    message = str(caught.value)
    assert "E2BIG" in message and "with_new_file" in message
    assert len(message) < 2000, "the message must not carry the 10 MB value"
