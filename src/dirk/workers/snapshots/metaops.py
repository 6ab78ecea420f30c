"""Metadata operations on a mounted root: symlinks, timestamps and owners.

Like `fileops`, every path is resolved inside the root first, so a symlink in the tree never
leads outside it; the walks below never follow symlinks.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from dirk.errors import InvalidArgumentError, SnapshotPathError
from dirk.workers.snapshots.fileops import _ensure_dirs, _lstat, resolve_parts
from dirk.workers.snapshots.layerview import is_whiteout
from dirk.workers.snapshots.paths import join
from dirk.workers.snapshots.tree import iter_tree


def make_symlink(root: Path, target: str, link_name: str) -> None:
    """A symlink at `link_name` holding `target` as given (it may dangle); parents made 0755.
    A file or symlink already there is replaced; a directory there is an error."""
    if not target:
        raise InvalidArgumentError("withSymlink: target must not be empty")
    parts = resolve_parts(root, link_name, follow_last=False)
    if not parts:
        raise InvalidArgumentError(f"cannot create a symlink at {link_name!r}: it is the root")
    parent = _ensure_dirs(root, parts[:-1])
    link = parent / parts[-1]
    st = _lstat(link)
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise SnapshotPathError(
                f"cannot create symlink {join(parts)}: a directory is there; remove it first"
            )
        os.unlink(link)
    os.symlink(target, link)


def _existing(root: Path, path: str, what: str) -> tuple[Path, os.stat_result]:
    parts = resolve_parts(root, path)
    top = root.joinpath(*parts)
    st = _lstat(top)
    if st is None or is_whiteout(st):
        raise SnapshotPathError(f"cannot {what} {join(parts)}: no such file or directory")
    return top, st


def set_timestamps(root: Path, path: str, timestamp: int) -> None:
    """Access and modification times of `path` and everything below it set to `timestamp`
    (links themselves, not their targets)."""
    top, st = _existing(root, path, "set the timestamps of")
    ns = timestamp * 1_000_000_000
    if stat.S_ISDIR(st.st_mode):
        for entry in iter_tree(top):
            os.utime(entry.path, ns=(ns, ns), follow_symlinks=False)
    os.utime(top, ns=(ns, ns), follow_symlinks=False)


def chown_tree(root: Path, path: str, uid: int, gid: int) -> None:
    """`path` and everything below it owned by uid:gid; modes are restored after chown,
    which would clear set-id bits of files, as `chown -R` by root keeps them for directories."""
    top, st = _existing(root, path, "chown")
    entries = [(str(top), st)]
    if stat.S_ISDIR(st.st_mode):
        entries.extend((e.path, e.st) for e in iter_tree(top))
    for entry_path, entry_st in entries:
        os.chown(entry_path, uid, gid, follow_symlinks=False)
        if not stat.S_ISLNK(entry_st.st_mode):
            os.chmod(entry_path, stat.S_IMODE(entry_st.st_mode))
