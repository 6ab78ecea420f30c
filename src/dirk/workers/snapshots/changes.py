"""What changed between two directory trees, and applying those changes elsewhere.

The trees are read-only views (mounted snapshots or layer directories; overlay whiteouts read
as absent). Paths are relative with "/" separators; directories end with "/", as Dagger's
Changeset shows them. A regular file counts as modified when its type, mode, owner, size or
bytes differ (not its times, as in git); a symlink when its target differs.
"""

from __future__ import annotations

import filecmp
import os
import shutil
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path

import attrs

from dirk.workers.snapshots.fileops import Copier, _lstat
from dirk.workers.snapshots.layerview import is_opaque, is_whiteout


@attrs.frozen
class TreeChanges:
    """Sorted paths: every added one (inside added directories too), modified files, and the
    removed ones both in full and collapsed (a removed directory stands for its contents)."""

    added: tuple[str, ...] = ()
    modified: tuple[str, ...] = ()
    all_removed: tuple[str, ...] = ()

    @property
    def removed(self) -> tuple[str, ...]:
        kept: list[str] = []
        for path in self.all_removed:  # sorted: a directory comes before its contents
            if kept and kept[-1].endswith("/") and path.startswith(kept[-1]):
                continue
            kept.append(path)
        return tuple(kept)

    @property
    def empty(self) -> bool:
        return not (self.added or self.modified or self.all_removed)


@attrs.define
class Touched:
    """The paths some layers hold, as a tree: a comparison of `base` with `base` plus those
    layers only needs to look at them. `full` marks a path below which anything may differ (a
    non-directory or an opaque directory in some layer)."""

    full: bool = False
    children: dict[str, Touched] = attrs.field(factory=dict)

    def below(self, parts: Sequence[str]) -> Touched:
        node = self
        for name in parts:
            if node.full:
                return node
            child = node.children.get(name)
            if child is None:
                return Touched()  # nothing below here was touched
            node = child
        return node


def touched_by(layer_dirs: Iterable[Path]) -> Touched:
    root = Touched()
    for layer in layer_dirs:
        _mark(str(layer), root)
    return root


def _mark(directory: str, node: Touched) -> None:
    if node.full:
        return
    with os.scandir(directory) as scan:
        for de in scan:
            child = node.children.setdefault(de.name, Touched())
            if not de.is_dir(follow_symlinks=False) or is_opaque(de.path):
                # A file, link or whiteout replaces whatever was below it in lower layers,
                # and an opaque directory hides it: anything there may differ.
                child.full = True
            else:
                _mark(de.path, child)


def _entries(directory: str) -> dict[str, os.stat_result]:
    """The visible entries of a directory, whiteouts left out; none when it is missing."""
    found: dict[str, os.stat_result] = {}
    try:
        scan = os.scandir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return found
    with scan:
        for de in scan:
            st = de.stat(follow_symlinks=False)
            if not is_whiteout(st):
                found[de.name] = st
    return found


def _all_below(directory: str, prefix: str, out: list[str]) -> None:
    for name, st in sorted(_entries(directory).items()):
        if stat.S_ISDIR(st.st_mode):
            out.append(prefix + name + "/")
            _all_below(os.path.join(directory, name), prefix + name + "/", out)
        else:
            out.append(prefix + name)


def _same(a_path: str, a: os.stat_result, b_path: str, b: os.stat_result) -> bool:
    if stat.S_IFMT(a.st_mode) != stat.S_IFMT(b.st_mode):
        return False
    if stat.S_ISLNK(a.st_mode):
        return os.readlink(a_path) == os.readlink(b_path)
    if (a.st_mode, a.st_uid, a.st_gid) != (b.st_mode, b.st_uid, b.st_gid):
        return False
    if stat.S_ISREG(a.st_mode):
        return a.st_size == b.st_size and filecmp.cmp(a_path, b_path, shallow=False)
    if stat.S_ISCHR(a.st_mode) or stat.S_ISBLK(a.st_mode):
        return a.st_rdev == b.st_rdev
    return True


def compare_trees(before: Path, after: Path, touched: Touched | None = None) -> TreeChanges:
    """The changes that turn `before` into `after`; with `touched`, only those paths are
    looked at (the others are known to be the same)."""
    added: list[str] = []
    modified: list[str] = []
    removed: list[str] = []

    def walk(b_dir: str, a_dir: str, prefix: str, node: Touched | None) -> None:
        old = _entries(b_dir)
        new = _entries(a_dir)
        names = old.keys() | new.keys()
        if node is not None and not node.full:
            names &= node.children.keys()
        for name in sorted(names):
            b_st, a_st = old.get(name), new.get(name)
            b_path, a_path = os.path.join(b_dir, name), os.path.join(a_dir, name)
            rel = prefix + name
            b_is_dir = b_st is not None and stat.S_ISDIR(b_st.st_mode)
            a_is_dir = a_st is not None and stat.S_ISDIR(a_st.st_mode)
            if b_st is not None and (a_st is None or b_is_dir != a_is_dir):
                removed.append(rel + "/" if b_is_dir else rel)
                if b_is_dir:
                    _all_below(b_path, rel + "/", removed)
            if a_st is not None and (b_st is None or b_is_dir != a_is_dir):
                added.append(rel + "/" if a_is_dir else rel)
                if a_is_dir:
                    _all_below(a_path, rel + "/", added)
            if b_st is None or a_st is None or b_is_dir != a_is_dir:
                continue
            if b_is_dir:
                below = None if node is None else node if node.full else node.children[name]
                walk(b_path, a_path, rel + "/", below)
            elif not _same(b_path, b_st, a_path, a_st):
                modified.append(rel)

    walk(str(before), str(after), "", touched)
    return TreeChanges(tuple(sorted(added)), tuple(sorted(modified)), tuple(sorted(removed)))


def copy_changed(after: Path, changes: TreeChanges, dest: Path) -> None:
    """Copy what `changes` added or modified from `after` into the directory `dest`, with
    parent directories as `after` has them; what is in the way at a path is replaced."""
    copier = Copier()
    for rel in sorted({*changes.added, *changes.modified}):
        parts = rel.rstrip("/").split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            target = dest / parent
            existing = _lstat(target)
            if existing is None or not stat.S_ISDIR(existing.st_mode):
                source = after / parent
                copier.copy(source, os.lstat(source), target, replace=True)
        source = after / rel.rstrip("/")
        copier.copy(source, os.lstat(source), dest / rel.rstrip("/"), replace=True)
    copier.finish()


def apply_changes(after: Path, changes: TreeChanges, dest: Path) -> None:
    """Make `dest` show `changes`: removed paths removed, then added and modified copied."""
    for rel in changes.removed:
        target = _below_real_dirs(dest, rel.rstrip("/"))
        st = _lstat(target) if target is not None else None
        if target is None or st is None:
            continue
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(target)
        else:
            os.unlink(target)
    copy_changed(after, changes, dest)


def _below_real_dirs(dest: Path, rel: str) -> Path | None:
    """`dest / rel` when every parent on the way is a real directory (never a symlink that
    could lead out of the tree); None when one is not, as then nothing is there to remove."""
    current = dest
    parts = rel.split("/")
    for comp in parts[:-1]:
        current = current / comp
        st = _lstat(current)
        if st is None or not stat.S_ISDIR(st.st_mode):
            return None
    return current / parts[-1]
