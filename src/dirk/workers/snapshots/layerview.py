"""A stack of overlay-format layer directories, read the way overlayfs reads them, unmounted.

Reading a few files this way costs a handful of lstat calls instead of a mount, and flattening
layers this way can hardlink files instead of copying them. The rules follow overlayfs: the
topmost entry wins; a whiteout (char device 0:0) hides lower entries; a directory merges with
lower directories until one is opaque (xattr trusted.overlay.opaque=y) or a lower layer holds a
non-directory or whiteout at that path.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path

import attrs

from dirk.errors import InvalidArgumentError, SnapshotError
from dirk.workers.snapshots.paths import MAX_SYMLINKS, Parts, join

OPAQUE_XATTR = "trusted.overlay.opaque"
OVERLAY_XATTR_PREFIX = "trusted.overlay."


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(path: Path | str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


@attrs.frozen
class Entry:
    """The visible entry at a path: the real file in the topmost layer that has it."""

    path: str
    st: os.stat_result
    #: For a directory: the layer directories (top first) whose contents merge here.
    dirs: tuple[str, ...] = ()

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.st.st_mode)


class LayerView:
    """Layer roots, top first. An empty stack is an empty root directory."""

    def __init__(self, layer_dirs: Sequence[Path | str]) -> None:
        self.layer_dirs = tuple(str(d) for d in layer_dirs)

    def root(self) -> Entry | None:
        if not self.layer_dirs:
            return None
        top = self.layer_dirs[0]
        try:
            st = os.lstat(top)
        except FileNotFoundError:
            raise SnapshotError(
                f"layer directory {top} is missing: the engine's state was changed behind its "
                "back; delete the state directory to start with an empty cache"
            ) from None
        return Entry(top, st, self.layer_dirs)

    def lookup(self, parts: Parts) -> Entry | None:
        """The entry at `parts` without following symlinks anywhere; None when absent."""
        entry = self.root()
        for comp in parts:
            if entry is None or not entry.dirs:
                return None  # absent, or a non-directory in the middle of the path
            entry = _child(entry.dirs, comp)
        return entry

    def resolve(self, parts: Parts, *, follow_last: bool = True) -> tuple[Parts, Entry | None]:
        """Like `paths.resolve` then `lookup`, in one walk: each directory is looked up once.

        Returns the resolved path and its entry (None when it does not exist).
        """
        root = self.root()
        if root is None:
            return parts, None
        todo = list(reversed(parts))
        names: list[str] = []
        entries: list[Entry] = [root]
        followed = 0
        while todo:
            comp = todo.pop()
            if comp in ("", "."):
                continue
            if comp == "..":
                if names:
                    names.pop()
                    entries.pop()
                continue
            parent = entries[-1]
            child = _child(parent.dirs, comp) if parent.dirs else None
            if child is None:
                missing = [comp, *(c for c in reversed(todo) if c not in ("", "."))]
                return (*names, *missing), None
            if stat.S_ISLNK(child.st.st_mode) and (todo or follow_last):
                followed += 1
                if followed > MAX_SYMLINKS:
                    raise InvalidArgumentError(
                        f"too many levels of symbolic links resolving {join(parts)!r}: "
                        "a symlink loop in the tree"
                    )
                target = os.readlink(child.path)
                if target.startswith("/"):
                    names, entries = [], [root]
                todo.extend(reversed(target.split("/")))
                continue
            names.append(comp)
            entries.append(child)
        return tuple(names), entries[-1]

    def names(self, entry: Entry) -> list[str]:
        """The visible names in a directory entry, sorted. The topmost occurrence of a name
        decides; only entries that are neither file, dir nor symlink need a stat."""
        visible: dict[str, bool] = {}
        for layer_dir in entry.dirs:
            try:
                scan = os.scandir(layer_dir)
            except FileNotFoundError:
                continue
            with scan:
                for de in scan:
                    if de.name not in visible:
                        visible[de.name] = not _is_whiteout_entry(de)
        return sorted(name for name, shown in visible.items() if shown)

    def children(self, entry: Entry) -> Iterator[tuple[str, Entry]]:
        """The visible children of a directory entry, in no particular order."""
        occurrences: dict[str, list[os.DirEntry[str]]] = {}
        for layer_dir in entry.dirs:
            try:
                scan = os.scandir(layer_dir)
            except FileNotFoundError:
                continue
            with scan:
                for de in scan:
                    occurrences.setdefault(de.name, []).append(de)
        for name, found in occurrences.items():
            child = _merge(found)
            if child is not None:
                yield name, child


def _is_whiteout_entry(de: os.DirEntry[str]) -> bool:
    if de.is_dir(follow_symlinks=False) or de.is_file(follow_symlinks=False) or de.is_symlink():
        return False
    return is_whiteout(de.stat(follow_symlinks=False))


def _child(dirs: tuple[str, ...], name: str) -> Entry | None:
    """Look `name` up in the merged directory made of `dirs` (top first)."""
    first: Entry | None = None
    merged: list[str] = []
    last = len(dirs) - 1
    for i, layer_dir in enumerate(dirs):
        path = layer_dir + "/" + name
        try:
            st = os.lstat(path)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                continue
            raise
        if is_whiteout(st) or (first is not None and not stat.S_ISDIR(st.st_mode)):
            break
        if first is None:
            first = Entry(path, st)
            if not stat.S_ISDIR(st.st_mode):
                return first
        merged.append(path)
        if i < last and is_opaque(path):
            break
    if first is None:
        return None
    return Entry(first.path, first.st, tuple(merged))


def _merge(found: list[os.DirEntry[str]]) -> Entry | None:
    """The visible entry for one name, from its occurrences in the layers (top first)."""
    first: Entry | None = None
    merged: list[str] = []
    last = len(found) - 1
    for i, de in enumerate(found):
        is_dir = de.is_dir(follow_symlinks=False)
        if first is not None and not is_dir:
            break
        st = de.stat(follow_symlinks=False)
        if is_whiteout(st):
            break
        if first is None:
            first = Entry(de.path, st)
            if not is_dir:
                return first
        merged.append(de.path)
        if i < last and is_opaque(de.path):
            break
    if first is None:
        return None
    return Entry(first.path, first.st, tuple(merged))
