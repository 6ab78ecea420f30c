"""The writing side of Directory and Container through the dirk SDK and a real `dirk engine`
daemon: the generated classes reach the new fields, and the answers are what a user sees."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import dirk
from tests.integration.sdk_engine import RunningEngine, foreground_engine

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def engine() -> Iterator[RunningEngine]:
    yield from foreground_engine()


def test_symlink_changes_and_combined_output(
    engine: RunningEngine, busybox_ref: str, tmp_path: Path
) -> None:
    with dirk.Connection(dirk.Config(engine=engine.socket_url, workdir=tmp_path)) as client:
        before = client.directory().with_new_file("a.txt", "one\n")
        after = (
            before.with_new_file("a.txt", "two\n")
            .with_symlink("a.txt", "link")
            .with_timestamps(1600000000)
        )
        changes = after.changes(before)
        assert changes.added_paths() == ["link"]
        assert changes.modified_paths() == ["a.txt"]
        assert "+two" in changes.as_patch().contents()
        ctr = (
            client.container()
            .from_(busybox_ref)
            .with_mounted_directory("/d", after)
            .with_exec(["sh", "-c", "readlink /d/link; sleep 0.2; stat -c %Y /d/a.txt >&2"])
        )
        assert ctr.combined_output() == "a.txt\n1600000000\n"
        assert ctr.mounts() == ["/d"]
