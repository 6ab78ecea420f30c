"""Host directories: content digests (not mtimes, not paths) and imports into layers."""

from __future__ import annotations

import os
import shutil
import stat
import time
from pathlib import Path

import pytest

from dirk.errors import HostPathError
from dirk.state import Database, StateLayout
from dirk.workers.snapshots import hostdir
from dirk.workers.snapshots.hostdir import digest_host_path, import_host_path
from dirk.workers.snapshots.layers import LayerStore


def _project(base: Path) -> Path:
    root = base / "project"
    (root / "src").mkdir(parents=True)
    (root / "src/main.py").write_text("print('hi')\n")
    (root / "run.sh").write_text("#!/bin/sh\necho\n")
    os.chmod(root / "run.sh", 0o755)
    (root / "README").write_text("readme\n")
    (root / "empty").mkdir()
    (root / "latest").symlink_to("src/main.py")
    return root


def test_digest_ignores_mtime_and_location(tmp_path: Path) -> None:
    root = _project(tmp_path)
    before = digest_host_path(root)
    assert before.startswith("sha256:") and len(before) == 71
    os.utime(root / "README", (1, 1))
    os.utime(root / "src", (2, 2))
    assert digest_host_path(root) == before
    elsewhere = tmp_path / "other" / "checkout"
    shutil.copytree(root, elsewhere, symlinks=True)
    assert digest_host_path(elsewhere) == before


def test_digest_changes_with_content_exec_bit_names_and_links(tmp_path: Path) -> None:
    root = _project(tmp_path)
    seen = {digest_host_path(root)}

    def changed() -> None:
        digest = digest_host_path(root)
        assert digest not in seen
        seen.add(digest)

    (root / "README").write_text("README\n")  # same size, new content
    changed()
    os.chmod(root / "src/main.py", 0o755)
    changed()
    (root / "README").rename(root / "README.md")
    changed()
    (root / "latest").unlink()
    (root / "latest").symlink_to("run.sh")
    changed()
    (root / "empty/sub").mkdir()
    changed()


def test_digest_respects_filters(tmp_path: Path) -> None:
    root = _project(tmp_path)
    only_py = digest_host_path(root, include=["*.py"])
    (root / "README").write_text("changed\n")
    assert digest_host_path(root, include=["*.py"]) == only_py
    no_src = digest_host_path(root, exclude=["src/"])
    (root / "src/main.py").write_text("changed\n")
    assert digest_host_path(root, exclude=["src/"]) == no_src
    assert digest_host_path(root, include=["*.py"]) != only_py


def test_digest_of_a_file_covers_name_and_content(tmp_path: Path) -> None:
    a = tmp_path / "a.txt"
    a.write_text("x")
    b_dir = tmp_path / "b"
    b_dir.mkdir()
    (b_dir / "a.txt").write_text("x")
    assert digest_host_path(a) == digest_host_path(b_dir / "a.txt")
    (b_dir / "c.txt").write_text("x")
    assert digest_host_path(a) != digest_host_path(b_dir / "c.txt")
    with pytest.raises(HostPathError, match="no such file or directory"):
        digest_host_path(tmp_path / "missing")


def test_digest_cache_sees_rewrites_of_old_files(tmp_path: Path) -> None:
    f = tmp_path / "d" / "f"
    f.parent.mkdir()
    f.write_text("one")
    old = time.time_ns() - 10 * hostdir.RACY_NS
    os.utime(f, ns=(old, old))
    first = digest_host_path(f.parent)
    assert digest_host_path(f.parent) == first  # served from the stat cache
    f.write_text("two")
    os.utime(f, ns=(old, old))  # same size and mtime: ctime still moves
    assert digest_host_path(f.parent) != first


def test_digest_of_2000_files_is_quick(tmp_path: Path) -> None:
    root = tmp_path / "many"
    for i in range(2000):
        path = root / f"d{i % 40}" / f"f{i}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * (i % 3000))
    started = time.perf_counter()
    digest_host_path(root)
    cold = time.perf_counter() - started
    assert cold < 3.0, f"digest of 2000 files took {cold:.2f}s"


@pytest.fixture
def layers(tmp_path: Path) -> LayerStore:
    layout = StateLayout(tmp_path / "state").ensure()
    return LayerStore(layout, Database(layout.db_path))


def test_import_directory_keeps_modes_links_and_filters(tmp_path: Path, layers: LayerStore) -> None:
    root = _project(tmp_path)
    os.chown(root / "README", 1234, 1234)
    snap = import_host_path(root, layers, exclude=["README"])
    assert len(snap.layers) == 1
    layer = layers.path(snap.layers[0])
    assert (layer / "src/main.py").read_text() == "print('hi')\n"
    assert stat.S_IMODE((layer / "run.sh").stat().st_mode) == 0o755
    assert os.readlink(layer / "latest") == "src/main.py"
    assert (layer / "empty").is_dir()
    assert not (layer / "README").exists()
    assert all(p.lstat().st_uid == 0 for p in layer.rglob("*"))


def test_import_file_lands_at_its_name(tmp_path: Path, layers: LayerStore) -> None:
    f = tmp_path / "tool.sh"
    f.write_text("#!/bin/sh\n")
    os.chmod(f, 0o750)
    link = tmp_path / "alias.sh"
    link.symlink_to(f)
    snap = import_host_path(link, layers)
    layer = layers.path(snap.layers[0])
    assert os.listdir(layer) == ["alias.sh"]
    assert stat.S_IMODE((layer / "alias.sh").lstat().st_mode) == 0o750


def _age(root: Path) -> None:
    """Backdate everything below `root` past the racy window, so the caches keep it."""
    old = time.time_ns() - 10 * hostdir.RACY_NS
    for path in [root, *root.rglob("*")]:
        os.utime(path, ns=(old, old), follow_symlinks=False)


def _settle() -> None:
    """Let ctimes (which utime cannot backdate) leave the racy window."""
    time.sleep(hostdir.RACY_NS / 1e9 + 0.1)


def test_unchanged_tree_is_digested_without_listing_or_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _project(tmp_path)
    (root / ".gitignore").write_text("*.log\n")
    (root / "x.log").write_text("ignored\n")
    _age(root)
    _settle()
    first = digest_host_path(root, exclude=["README"], gitignore=True)
    calls: list[str] = []
    real_scandir = os.scandir

    def counting_scandir(path: str) -> object:
        calls.append(path)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", counting_scandir)
    monkeypatch.setattr(hostdir, "_content_hash", lambda *a: pytest.fail("read a file"))
    assert digest_host_path(root, exclude=["README"], gitignore=True) == first
    assert calls == []
    monkeypatch.undo()
    # Each kind of change is seen: a new file, a changed ignore file, a changed file.
    (root / "src" / "new.py").write_text("new\n")
    second = digest_host_path(root, exclude=["README"], gitignore=True)
    assert second != first
    (root / ".gitignore").write_text("*.py\n")
    assert digest_host_path(root, exclude=["README"], gitignore=True) not in (first, second)
    (root / "README").write_text("excluded, so no change\n")
    third = digest_host_path(root, exclude=["README"], gitignore=True)
    (root / "run.sh").write_text("#!/bin/sh\necho changed\n")
    assert digest_host_path(root, exclude=["README"], gitignore=True) != third


def test_gitignore_import_copies_what_the_digest_covers(tmp_path: Path, layers: LayerStore) -> None:
    root = _project(tmp_path)
    (root / ".gitignore").write_text("*.log\nbuild/\n")
    (root / "x.log").write_text("ignored\n")
    (root / "build").mkdir()
    (root / "build" / "out").write_text("ignored\n")
    (root / "src" / ".gitignore").write_text("!keep.log\n")
    (root / "src" / "keep.log").write_text("kept\n")
    snap = import_host_path(root, layers, gitignore=True)
    layer = layers.path(snap.layers[0])
    assert not (layer / "x.log").exists() and not (layer / "build").exists()
    assert (layer / "src" / "keep.log").read_text() == "kept\n"
    assert digest_host_path(layer) == digest_host_path(root, gitignore=True)
