"""Containers of another architecture: an image index picks the platform's image, and its
binaries run under QEMU user emulation (binfmt_misc, registered by scripts/prepare-host.sh).

The test image `busybox:multiarch` is an index of busybox for linux/amd64 and, built from
Debian's arm64 busybox-static, for linux/arm64.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import dirk
from tests.integration.sdk_engine import RunningEngine, foreground_engine

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def engine() -> Iterator[RunningEngine]:
    yield from foreground_engine()


@pytest.fixture(scope="module")
def multiarch(registry: str) -> str:
    return f"{registry}/busybox:multiarch"


def connect(engine: RunningEngine, tmp_path: Path) -> dirk.Connection:
    return dirk.Connection(dirk.Config(engine=engine.socket_url, workdir=tmp_path))


def test_qemu_user_emulation_is_registered() -> None:
    entry = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
    assert entry.is_file(), "qemu-aarch64 is not registered: run scripts/prepare-host.sh"
    text = entry.read_text()
    assert text.startswith("enabled"), text
    # F: the interpreter is opened at registration, so it works inside any mount namespace.
    flags = next(line for line in text.splitlines() if line.startswith("flags:"))
    assert "F" in flags.split(":", 1)[1], text


def test_default_platform_is_the_hosts(engine: RunningEngine, tmp_path: Path) -> None:
    with connect(engine, tmp_path) as client:
        assert client.default_platform() == "linux/amd64"


def test_an_index_gives_each_platform_its_own_image(
    engine: RunningEngine, tmp_path: Path, multiarch: str
) -> None:
    script = ["sh", "-c", "uname -m; busybox | head -n 1"]
    with connect(engine, tmp_path) as client:
        native = client.container().from_(multiarch).with_exec(script).stdout()
        arm = client.container(platform="linux/arm64").from_(multiarch).with_exec(script).stdout()
    assert native.splitlines()[0] == "x86_64"
    assert arm.splitlines()[0] == "aarch64"
    assert native.splitlines()[1].startswith("BusyBox v1.")
    assert arm.splitlines()[1].startswith("BusyBox v1.")


def test_emulated_steps_write_layers_and_are_cached(
    engine: RunningEngine, tmp_path: Path, multiarch: str
) -> None:
    """An arm64 step's output is a layer the next arm64 step reads; the same pipeline again
    is a cache hit (the token printed the first time comes back), and the same step on amd64
    is another step."""
    token = uuid.uuid4().hex
    step = f"echo {token}-$(uname -m)-$RANDOM > /made; cat /made"

    def run(client: dirk.Client[dirk.Sync], platform: str) -> str:
        return (
            client.container(platform=platform)
            .from_(multiarch)
            .with_exec(["sh", "-c", step])
            .with_exec(["cat", "/made"])
            .stdout()
        )

    with connect(engine, tmp_path) as client:
        first = run(client, "linux/arm64")
    with connect(engine, tmp_path) as client:
        again = run(client, "linux/arm64")
        native = run(client, "linux/amd64")
    assert first.startswith(f"{token}-aarch64-")
    assert again == first
    assert native.startswith(f"{token}-x86_64-")


def test_an_index_without_the_platform_says_which_it_has(
    engine: RunningEngine, tmp_path: Path, multiarch: str
) -> None:
    with connect(engine, tmp_path) as client, pytest.raises(dirk.errors.QueryError) as caught:
        client.container(platform="linux/s390x").from_(multiarch).sync()
    message = str(caught.value)
    assert "linux/s390x" in message
    assert "linux/arm64" in message and "linux/amd64" in message
