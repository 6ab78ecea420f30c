"""Exports to the host: atomic per entry, merge or wipe, and never a write through a symlink
found inside the target."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dirk.errors import HostPathError
from dirk.workers.hostaccess import HostAccess, HostUser
from dirk.workers.snapshots.hostexport import export_directory, export_file


def _source(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("new a\n")
    (root / "sub" / "b.txt").write_text("new b\n")
    (root / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(root / "run.sh", 0o750)
    (root / "rel-link").symlink_to("a.txt")
    os.utime(root / "a.txt", (1_000_000, 1_000_000))
    return root


def _tree(root: Path) -> dict[str, str]:
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = "-> " + os.readlink(path)
        elif path.is_dir():
            out[rel] = "/"
        else:
            out[rel] = path.read_text()
    return out


def _outside(tmp_path: Path) -> Path:
    """A directory outside every export target, with a file a symlink attack would hit."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "a.txt").write_text("precious\n")
    (victim / "b.txt").write_text("precious\n")
    return victim


def test_export_directory_into_a_new_path(tmp_path: Path) -> None:
    src = _source(tmp_path / "src")
    dest = tmp_path / "out" / "deep" / "dir"
    assert export_directory(src, dest) == dest
    assert _tree(dest) == _tree(src)
    assert stat.S_IMODE((dest / "run.sh").stat().st_mode) == 0o750
    assert (dest / "a.txt").stat().st_mtime == 1_000_000
    assert [p.name for p in dest.parent.iterdir()] == ["dir"]  # no temporary left


def test_merge_keeps_other_entries_and_wipe_removes_them(tmp_path: Path) -> None:
    src = _source(tmp_path / "src")
    dest = tmp_path / "dest"
    (dest / "sub").mkdir(parents=True)
    (dest / "keep.txt").write_text("mine\n")
    (dest / "sub" / "mine.txt").write_text("mine\n")
    (dest / "a.txt").mkdir()  # a directory where the export has a file
    (dest / "a.txt" / "x").write_text("x")
    export_directory(src, dest)
    tree = _tree(dest)
    assert tree["keep.txt"] == "mine\n" and tree["sub/mine.txt"] == "mine\n"
    assert tree["a.txt"] == "new a\n" and tree["sub/b.txt"] == "new b\n"
    assert not any(".dirk-" in name for name in tree)
    export_directory(src, dest, wipe=True)
    assert _tree(dest) == _tree(src)
    assert not any(".dirk-" in p.name for p in tmp_path.iterdir())


def test_symlinks_inside_the_target_are_replaced_not_followed(tmp_path: Path) -> None:
    victim = _outside(tmp_path)
    src = _source(tmp_path / "src")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "sub").symlink_to(victim)  # a directory of the export lands on a link
    (dest / "a.txt").symlink_to(victim / "a.txt")  # a file of the export lands on a link
    (dest / "etc").symlink_to("/etc")
    before = os.stat("/etc/hostname").st_mtime_ns if os.path.exists("/etc/hostname") else 0
    export_directory(src, dest)
    assert _tree(victim) == {"a.txt": "precious\n", "b.txt": "precious\n"}
    assert not (dest / "sub").is_symlink() and (dest / "sub" / "b.txt").read_text() == "new b\n"
    assert not (dest / "a.txt").is_symlink() and (dest / "a.txt").read_text() == "new a\n"
    assert os.readlink(dest / "etc") == "/etc"  # not in the export: left alone
    if before:
        assert os.stat("/etc/hostname").st_mtime_ns == before


def test_a_source_with_a_directory_named_like_a_link_to_etc(tmp_path: Path) -> None:
    victim = _outside(tmp_path)
    src = tmp_path / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "a.txt").write_text("from the export\n")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "etc").symlink_to(victim)
    export_directory(src, dest)
    assert _tree(victim) == {"a.txt": "precious\n", "b.txt": "precious\n"}
    assert (dest / "etc" / "a.txt").read_text() == "from the export\n"
    assert not (dest / "etc").is_symlink()


def test_exported_links_are_written_as_links(tmp_path: Path) -> None:
    victim = _outside(tmp_path)
    src = tmp_path / "src"
    src.mkdir()
    (src / "out").symlink_to(victim / "a.txt")
    dest = tmp_path / "dest"
    export_directory(src, dest)
    assert os.readlink(dest / "out") == str(victim / "a.txt")
    assert (victim / "a.txt").read_text() == "precious\n"


def test_wipe_replaces_a_link_at_the_target_itself(tmp_path: Path) -> None:
    victim = _outside(tmp_path)
    src = _source(tmp_path / "src")
    dest = tmp_path / "dest"
    dest.symlink_to(victim)
    export_directory(src, dest, wipe=True)
    assert not dest.is_symlink() and _tree(dest) == _tree(src)
    assert _tree(victim) == {"a.txt": "precious\n", "b.txt": "precious\n"}


def test_export_file(tmp_path: Path) -> None:
    victim = _outside(tmp_path)
    src = _source(tmp_path / "src") / "run.sh"
    out = tmp_path / "out"
    assert export_file(src, out / "tool") == out / "tool"
    assert (out / "tool").read_text() == "#!/bin/sh\n"
    assert stat.S_IMODE((out / "tool").stat().st_mode) == 0o750
    with pytest.raises(HostPathError, match="allowParentDirPath"):
        export_file(src, out)
    assert export_file(src, out, allow_parent_dir=True) == out / "run.sh"
    (out / "link").symlink_to(victim / "a.txt")
    export_file(src, out / "link")
    assert (victim / "a.txt").read_text() == "precious\n"
    assert not (out / "link").is_symlink()
    assert sorted(p.name for p in out.iterdir()) == ["link", "run.sh", "tool"]


def test_export_below_a_file_is_a_clear_error(tmp_path: Path) -> None:
    src = _source(tmp_path / "src")
    (tmp_path / "plain").write_text("x")
    with pytest.raises(HostPathError, match="a parent of it is a file"):
        export_directory(src, tmp_path / "plain" / "dir")


def test_new_entries_belong_to_the_owner_of_the_target_directory(tmp_path: Path) -> None:
    src = _source(tmp_path / "src")
    home = tmp_path / "home"
    home.mkdir()
    os.chown(home, 1234, 5678)
    export_directory(src, home / "out")
    export_file(src / "a.txt", home / "a.txt")
    owners = {(p.lstat().st_uid, p.lstat().st_gid) for p in [home / "a.txt", *home.rglob("*")]}
    assert owners == {(1234, 5678)}


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A directory every user can traverse (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="dirk-export-", dir="/var/tmp"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path)


@pytest.mark.anyio
async def test_export_with_a_users_credentials(shared_tmp: Path) -> None:
    src = _source(shared_tmp / "src")
    for path in [src, *src.rglob("*")]:
        if not path.is_symlink():
            os.chmod(path, 0o755)
    home = shared_tmp / "home"
    home.mkdir()
    os.chown(home, 1234, 5678)  # a group the user is not in: the chown to it is refused
    closed = shared_tmp / "closed"
    closed.mkdir(mode=0o755)
    access = HostAccess(HostUser(1234, 1234, (1234,)))
    try:
        await access.run(export_directory, src, home / "out")
        owners = {(p.lstat().st_uid, p.lstat().st_gid) for p in (home / "out").rglob("*")}
        assert owners == {(1234, 1234)}
        with pytest.raises(HostPathError, match=r"permission denied|not writable"):
            await access.run(export_directory, src, closed / "out")
    finally:
        access.close()
    assert not (closed / "out").exists()
