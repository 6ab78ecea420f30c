"""Walk a directory tree the way a filtered copy sees it: include/exclude are gitignore-like.

One walker serves copies between snapshots, host imports and host digests, so what a digest
covers is exactly what an import copies.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path

import attrs
import pathspec


@attrs.frozen
class TreeEntry:
    """One entry below the walked directory; `rel` uses "/" and has no leading slash."""

    rel: str
    path: str  # a host path; str, not Path: building thousands of Paths costs more than stat
    st: os.stat_result

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.st.st_mode)


class PathFilter:
    """gitignore-like include/exclude patterns relative to the copied directory.

    A pattern without a slash matches at any depth ("*.py"), a trailing slash matches
    directories only ("build/"), "**/" matches any number of directories. An entry is copied when
    no exclude pattern matches it and, if there are include patterns, one matches it or one of
    its parent directories. Directories holding copied entries are always created.

    An exclude pattern starting with "!" re-includes what an earlier one excluded, even inside
    an excluded directory (as Docker's .dockerignore and Dagger's exclude do; git cannot): an
    excluded directory is then still entered, and created only if something in it is copied.
    """

    def __init__(self, include: Sequence[str] = (), exclude: Sequence[str] = ()) -> None:
        self._include = pathspec.GitIgnoreSpec.from_lines(include) if include else None
        self._exclude = pathspec.GitIgnoreSpec.from_lines(exclude) if exclude else None
        self.reincludes = any(p.lstrip().startswith("!") for p in exclude)

    @property
    def empty(self) -> bool:
        return self._include is None and self._exclude is None

    def excluded(self, rel: str, is_dir: bool) -> bool:
        return self._exclude is not None and self._exclude.match_file(rel + "/" if is_dir else rel)

    def included(self, rel: str, is_dir: bool) -> bool:
        return self._include is None or self._include.match_file(rel + "/" if is_dir else rel)


def iter_tree(
    root: Path, include: Sequence[str] = (), exclude: Sequence[str] = ()
) -> Iterator[TreeEntry]:
    """Entries below `root` (not `root` itself), parents before children, names sorted.

    Symlinks are reported, never followed. Excluded directories are not entered.
    """
    filt = PathFilter(include, exclude)
    if filt.empty:
        yield from _walk_all(root, "")
    else:
        yield from _walk_filtered(root, "", filt, False)


def _scan(directory: str | Path) -> list[os.DirEntry[str]]:
    with os.scandir(directory) as it:
        return sorted(it, key=lambda de: de.name)


def _walk_all(directory: str | Path, prefix: str) -> Iterator[TreeEntry]:
    for de in _scan(directory):
        st = de.stat(follow_symlinks=False)
        entry = TreeEntry(prefix + de.name, de.path, st)
        yield entry
        if stat.S_ISDIR(st.st_mode):
            yield from _walk_all(entry.path, entry.rel + "/")


def _walk_filtered(
    directory: str | Path, prefix: str, filt: PathFilter, inside_included: bool
) -> Iterator[TreeEntry]:
    for de in _scan(directory):
        rel = prefix + de.name
        is_dir = de.is_dir(follow_symlinks=False)
        if filt.excluded(rel, is_dir):
            if is_dir and filt.reincludes:
                held = list(_walk_filtered(de.path, rel + "/", filt, inside_included))
                if held:
                    yield TreeEntry(rel, de.path, de.stat(follow_symlinks=False))
                    yield from held
            continue
        included = inside_included or filt.included(rel, is_dir)
        if not is_dir:
            if included:
                yield TreeEntry(rel, de.path, de.stat(follow_symlinks=False))
            continue
        entry = TreeEntry(rel, de.path, de.stat(follow_symlinks=False))
        below = _walk_filtered(entry.path, rel + "/", filt, included)
        if included:
            yield entry
            yield from below
        else:
            # Created only if something inside it is copied.
            held = list(below)
            if held:
                yield entry
                yield from held
