"""Reading a stack of overlay-format layers without mounting it, and flattening it.

Whiteouts (char 0:0) and opaque markers (trusted.* xattrs) can only be made by root: these tests
fail, never skip, when run without it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from dirk.workers.snapshots.flatten import flatten_into
from dirk.workers.snapshots.layerview import OPAQUE_XATTR, LayerView
from dirk.workers.snapshots.paths import clean_path


@pytest.fixture(autouse=True)
def _need_root() -> None:
    assert os.geteuid() == 0, "layer tests create whiteouts and trusted.* xattrs: run as root"


def _layer(base: Path, name: str, files: dict[str, str | None]) -> Path:
    """A layer: value str = file contents, None = whiteout, "<dir>" = directory, "<opaque>"
    = opaque directory, "-> target" = symlink."""
    root = base / name
    root.mkdir()
    for rel, value in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if value is None:
            os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))
        elif value in ("<dir>", "<opaque>"):
            path.mkdir(exist_ok=True)
            if value == "<opaque>":
                os.setxattr(path, OPAQUE_XATTR, b"y")
        elif value.startswith("-> "):
            path.symlink_to(value[3:])
        else:
            path.write_text(value)
    return root


@pytest.fixture
def view(tmp_path: Path) -> LayerView:
    bottom = _layer(
        tmp_path,
        "l0",
        {
            "etc/os-release": "debian",
            "etc/hosts": "hosts",
            "usr/lib/os-release": "real",
            "opt/old/a": "a",
            "opt/old/b": "b",
            "var/cache/x": "x",
            "was-file": "f",
        },
    )
    middle = _layer(
        tmp_path,
        "l1",
        {"etc/hosts": None, "opt/old": "<opaque>", "opt/old/c": "c", "var/cache": None},
    )
    top = _layer(
        tmp_path,
        "l2",
        {
            "etc/new": "new",
            "etc/os-release": "-> ../usr/lib/os-release",
            "was-file/inside": "dir now",
            "var/cache": "<dir>",
        },
    )
    return LayerView([top, middle, bottom])


def _read(view: LayerView, path: str) -> str | None:
    _, entry = view.resolve(clean_path(path))
    if entry is None:
        return None
    return Path(entry.path).read_text()


def test_topmost_wins_and_whiteouts_hide(view: LayerView) -> None:
    assert _read(view, "/etc/new") == "new"
    assert _read(view, "/etc/hosts") is None
    assert _read(view, "/etc/os-release") == "real"  # symlink followed inside the view
    entry = view.lookup(clean_path("/etc"))
    assert entry is not None
    assert view.names(entry) == ["new", "os-release"]


def test_opaque_dir_hides_lower_contents(view: LayerView) -> None:
    entry = view.lookup(clean_path("/opt/old"))
    assert entry is not None
    assert view.names(entry) == ["c"]
    assert _read(view, "/opt/old/a") is None


def test_dir_over_whiteout_or_file_starts_fresh(view: LayerView) -> None:
    cache = view.lookup(clean_path("/var/cache"))
    assert cache is not None and view.names(cache) == []
    was_file = view.lookup(clean_path("/was-file"))
    assert was_file is not None and was_file.is_dir
    assert view.names(was_file) == ["inside"]


def test_flatten_matches_the_view(view: LayerView, tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    flatten_into(view, flat)
    found = sorted(
        str(p.relative_to(flat)) for p in flat.rglob("*") if not p.is_dir() or p.is_symlink()
    )
    assert found == [
        "etc/new",
        "etc/os-release",
        "opt/old/c",
        "usr/lib/os-release",
        "was-file/inside",
    ]
    assert (flat / "var/cache").is_dir()
    assert not os.listxattr(flat / "opt/old")  # bottom layer: no overlay markers
    # Files are hardlinked from the immutable layers, not copied.
    assert (flat / "etc/new").stat().st_nlink == 2
