"""Container paths resolve inside the root filesystem, whatever its symlinks say."""

from __future__ import annotations

from pathlib import Path

import pytest

from dirk.errors import InvalidArgumentError
from dirk.workers.snapshots.fileops import resolve_in_root


def test_absolute_and_relative_links_stay_inside(tmp_path: Path) -> None:
    (tmp_path / "usr/lib").mkdir(parents=True)
    (tmp_path / "lib").symlink_to("/usr/lib")
    (tmp_path / "usr/lib/up").symlink_to("../../../../etc")
    assert resolve_in_root(tmp_path, "/lib/x.so") == tmp_path / "usr/lib/x.so"
    assert resolve_in_root(tmp_path, "/lib/up/passwd") == tmp_path / "etc/passwd"
    with pytest.raises(InvalidArgumentError, match="climbs above the root"):
        resolve_in_root(tmp_path, "../../etc/passwd")


def test_missing_components_are_kept(tmp_path: Path) -> None:
    assert resolve_in_root(tmp_path, "/no/such/file") == tmp_path / "no/such/file"


def test_symlink_loops_fail(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to("/b")
    (tmp_path / "b").symlink_to("/a")
    with pytest.raises(InvalidArgumentError, match="too many levels"):
        resolve_in_root(tmp_path, "/a/x")
