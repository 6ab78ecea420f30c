"""File operations on a plain directory tree standing in for a mounted root."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from dirk.errors import InvalidArgumentError, SnapshotPathError
from dirk.workers.snapshots import fileops
from dirk.workers.snapshots.paths import clean_path, resolve


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    r.mkdir()
    return r


# --- paths ----------------------------------------------------------------------------------


def test_clean_path_normalises_and_rejects_climbing_above_root() -> None:
    assert clean_path("/a//b/./c/") == ("a", "b", "c")
    assert clean_path("a/b/../c") == ("a", "c")
    assert clean_path("/") == ()
    with pytest.raises(InvalidArgumentError, match="climbs above the root"):
        clean_path("/../etc/passwd")
    with pytest.raises(InvalidArgumentError):
        clean_path("a/../../b")
    with pytest.raises(InvalidArgumentError, match="NUL"):
        clean_path("/a\0b")


def test_resolve_follows_links_inside_the_root_and_detects_loops() -> None:
    links = {("lib",): "usr/lib", ("usr", "lib", "up"): "../../../../..", ("abs",): "/usr"}

    def readlink(parts: tuple[str, ...]) -> str | None:
        return links.get(parts)

    assert resolve(("lib", "x"), readlink) == ("usr", "lib", "x")
    assert resolve(("lib", "up", "etc"), readlink) == ("etc",)
    assert resolve(("abs", "bin"), readlink) == ("usr", "bin")
    assert resolve(("abs",), readlink, follow_last=False) == ("abs",)
    loop = {("a",): "b", ("b",): "a"}
    with pytest.raises(InvalidArgumentError, match="too many levels"):
        resolve(("a",), loop.get)


# --- write / mkdir / remove -----------------------------------------------------------------


def test_write_file_creates_parents_with_mode_and_owner(root: Path) -> None:
    fileops.write_file(root, "/a/b/c.txt", b"hello", mode=0o640, uid=1000, gid=1001)
    path = root / "a/b/c.txt"
    assert path.read_bytes() == b"hello"
    st = path.stat()
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert (st.st_uid, st.st_gid) == (1000, 1001)
    assert stat.S_IMODE((root / "a").stat().st_mode) == 0o755
    fileops.write_file(root, "a/b/c.txt", b"x")  # replaces, relative path is from "/"
    assert path.read_bytes() == b"x"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_symlink_to_host_etc_passwd_resolves_inside_root(root: Path) -> None:
    host_passwd = Path("/etc/passwd").read_bytes()
    (root / "etc").mkdir()
    (root / "link").symlink_to("/etc/passwd")
    (root / "up").symlink_to("../../../../../../etc")
    assert fileops.resolve_in_root(root, "/link") == root / "etc/passwd"
    assert fileops.resolve_in_root(root, "/up/shadow") == root / "etc/shadow"
    fileops.write_file(root, "/link", b"inside")
    fileops.write_file(root, "/up/group", b"inside too")
    assert (root / "etc/passwd").read_bytes() == b"inside"
    assert (root / "etc/group").read_bytes() == b"inside too"
    assert Path("/etc/passwd").read_bytes() == host_passwd
    with pytest.raises(InvalidArgumentError):
        fileops.write_file(root, "/../../etc/passwd", b"escape")


def test_remove_takes_the_symlink_not_its_target(root: Path) -> None:
    fileops.write_file(root, "/data/keep", b"k")
    (root / "ln").symlink_to("/data")
    fileops.remove(root, "/ln")
    assert not (root / "ln").is_symlink()
    assert (root / "data/keep").exists()
    fileops.remove(root, "/data")
    assert not (root / "data").exists()
    fileops.remove(root, "/missing")
    with pytest.raises(SnapshotPathError, match="no such file"):
        fileops.remove(root, "/missing", allow_missing=False)
    with pytest.raises(InvalidArgumentError, match="root directory"):
        fileops.remove(root, "/")


def test_make_dir_and_file_in_the_way(root: Path) -> None:
    fileops.make_dir(root, "/x/y", 0o700)
    assert stat.S_IMODE((root / "x/y").stat().st_mode) == 0o700
    assert stat.S_IMODE((root / "x").stat().st_mode) == 0o755
    fileops.make_dir(root, "/x/y", 0o755)  # exists: kept
    assert stat.S_IMODE((root / "x/y").stat().st_mode) == 0o700
    fileops.write_file(root, "/f", b"")
    with pytest.raises(SnapshotPathError, match="not a directory"):
        fileops.write_file(root, "/f/g", b"")
    with pytest.raises(SnapshotPathError, match="a file is there"):
        fileops.make_dir(root, "/f")
    with pytest.raises(SnapshotPathError, match="a directory is there"):
        fileops.write_file(root, "/x", b"")


# --- copy -----------------------------------------------------------------------------------


def _tree(base: Path) -> Path:
    src = base / "src"
    for rel, data in {
        "a.py": b"print(1)",
        "b.txt": b"b",
        "pkg/c.py": b"c",
        "pkg/d.txt": b"d",
        "build/out.o": b"o",
        "web/node_modules/x/index.js": b"js",
        "web/app.js": b"app",
    }.items():
        path = src / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    os.chmod(src / "a.py", 0o755)
    (src / "link").symlink_to("pkg/c.py")
    os.utime(src / "b.txt", ns=(1_000_000_000, 1_000_000_000))
    return src


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir() or p.is_symlink()}


def test_copy_dir_preserves_modes_links_and_mtimes(tmp_path: Path, root: Path) -> None:
    src = _tree(tmp_path)
    fileops.copy_into(src.parent, "/src", root, "/dst")
    dst = root / "dst"
    assert _files(dst) == _files(src)
    assert stat.S_IMODE((dst / "a.py").stat().st_mode) == 0o755
    assert os.readlink(dst / "link") == "pkg/c.py"
    assert (dst / "b.txt").stat().st_mtime_ns == 1_000_000_000
    assert (dst / "pkg").stat().st_mtime_ns == (src / "pkg").stat().st_mtime_ns


def test_copy_with_include_and_exclude(tmp_path: Path, root: Path) -> None:
    src = _tree(tmp_path)
    fileops.copy_into(src, "/", root, "/inc", include=["*.py"])
    assert _files(root / "inc") == {"a.py", "pkg/c.py"}
    assert not (root / "inc/web").exists()  # no empty dirs for unmatched subtrees
    fileops.copy_into(src, "/", root, "/exc", exclude=["build/", "**/node_modules", "*.txt"])
    assert _files(root / "exc") == {"a.py", "link", "pkg/c.py", "web/app.js"}
    fileops.copy_into(src, "/", root, "/both", include=["web/", "pkg/"], exclude=["*.txt"])
    assert _files(root / "both") == {
        "pkg/c.py",
        "web/app.js",
        "web/node_modules/x/index.js",
    }


def test_copy_file_exactly_with_owner_and_mode(tmp_path: Path, root: Path) -> None:
    src = _tree(tmp_path)
    (root / "etc").mkdir()
    (root / "etc/target").symlink_to("/elsewhere")
    fileops.copy_into(src, "/a.py", root, "/etc/target", owner=(5, 6), mode=0o600)
    target = root / "etc/target"
    assert not target.is_symlink()
    assert target.read_bytes() == b"print(1)"
    st = target.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (5, 6, 0o600)
    with pytest.raises(SnapshotPathError, match="no such file"):
        fileops.copy_into(src, "/nope", root, "/x")


def test_copy_over_existing_merges_and_replaces_kinds(tmp_path: Path, root: Path) -> None:
    src = _tree(tmp_path)
    fileops.write_file(root, "/d/pkg", b"a file where the source has a dir")
    fileops.make_dir(root, "/d/a.py")  # a dir where the source has a file
    fileops.write_file(root, "/d/other", b"untouched")
    fileops.copy_into(src, "/", root, "/d")
    assert (root / "d/pkg/c.py").read_bytes() == b"c"
    assert (root / "d/a.py").read_bytes() == b"print(1)"
    assert (root / "d/other").read_bytes() == b"untouched"


def test_copy_keeps_hardlinks_within_the_copy(tmp_path: Path, root: Path) -> None:
    src = tmp_path / "s"
    src.mkdir()
    (src / "one").write_bytes(b"1")
    os.link(src / "one", src / "two")
    fileops.copy_into(src, "/", root, "/")
    assert (root / "one").stat().st_ino == (root / "two").stat().st_ino


def test_copy_keeps_xattrs(tmp_path: Path, root: Path) -> None:
    src = tmp_path / "x"
    src.mkdir()
    (src / "f").write_bytes(b"f")
    os.setxattr(src / "f", "user.origin", b"test")
    os.setxattr(src, "user.dir", b"d")
    fileops.copy_into(src, "/", root, "/dst")
    assert os.getxattr(root / "dst/f", "user.origin") == b"test"
    assert os.getxattr(root / "dst", "user.dir") == b"d"
