"""Walk a directory tree the way a filtered copy sees it: include/exclude are gitignore-like.

One walker serves copies between snapshots, host imports and host digests, so what a digest
covers is exactly what an import copies.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from dirk.workers.snapshots.ignorerules import IgnoreRules

if TYPE_CHECKING:
    import pathspec

#: The name of the files `gitignore=True` honours, in every directory of the tree.
GITIGNORE = ".gitignore"
#: Ignore files larger than this are not rules but an accident; they are read up to here.
_IGNORE_FILE_LIMIT = 1 << 20

#: What a walk looked at besides the entries it yields: (path, stat) of every directory it
#: listed and every ignore file it read. A tree whose watched stats are unchanged walks the same.
Watch = list[tuple[str, os.stat_result]]


@attrs.frozen
class TreeEntry:
    """One entry below the walked directory; `rel` uses "/" and has no leading slash."""

    rel: str
    path: str  # a host path; str, not Path: building thousands of Paths costs more than stat
    st: os.stat_result

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.st.st_mode)


def _spec(patterns: Sequence[str]) -> pathspec.GitIgnoreSpec | None:
    lines = [p for p in patterns if p.strip()]
    if not lines:
        return None
    import pathspec  # a tenth of the engine's imports; only filtered copies need it

    return pathspec.GitIgnoreSpec.from_lines(lines)


def _verdict(spec: pathspec.GitIgnoreSpec, rel: str, is_dir: bool) -> bool | None:
    """True when the last matching pattern matches, False when it is a negation, None when no
    pattern matches (gitignore semantics: the last match wins)."""
    result: bool | None = spec.check_file(rel + "/" if is_dir else rel).include
    return result


class PathFilter:
    """gitignore-like include/exclude patterns relative to the copied directory.

    A pattern without a slash matches at any depth ("*.py"), a leading slash anchors it to the
    copied directory ("/build"), a trailing slash matches directories only ("build/"), "**"
    matches any number of directories and "!" negates an earlier pattern. An entry is copied
    when no exclude pattern ignores it and, if there are include patterns, they select it or
    one of its parent directories (a later "!pattern" deselects again). A directory that is
    not selected itself is created only when something below it is copied.

    An exclude pattern starting with "!" re-includes what an earlier one excluded, even inside
    an excluded directory (as Docker's .dockerignore and Dagger's exclude do; git cannot): an
    excluded directory is then still entered, and created only if something in it is copied.
    `.gitignore` files (`gitignore=True`) keep git's rules (see `ignorerules`): each pattern
    matches a path itself, never what is below it, and an ignored directory is not entered.
    """

    def __init__(
        self, include: Sequence[str] = (), exclude: Sequence[str] = (), gitignore: bool = False
    ) -> None:
        self._include = _spec(include)
        self._exclude = _spec(exclude)
        self.gitignore = gitignore
        self.reincludes = any(p.lstrip().startswith("!") for p in exclude)

    @property
    def empty(self) -> bool:
        return self._include is None and self._exclude is None and not self.gitignore

    def excluded(self, rel: str, is_dir: bool) -> bool:
        return self._exclude is not None and bool(_verdict(self._exclude, rel, is_dir))

    def included(self, rel: str, is_dir: bool, parent_included: bool = False) -> bool:
        """Whether the include patterns select `rel`; `parent_included` is its parent's."""
        if self._include is None:
            return True
        verdict = _verdict(self._include, rel, is_dir)
        return parent_included if verdict is None else verdict


@attrs.frozen
class _IgnoreFile:
    """The rules of one .gitignore file, for the entries below `prefix` ("" or "dir/")."""

    prefix: str
    rules: IgnoreRules


def _ignored(rules: Sequence[_IgnoreFile], rel: str, is_dir: bool) -> bool:
    """git's answer: the deepest .gitignore with a pattern that matches `rel` itself decides,
    and in it the last such pattern. The walk asks before it enters a directory."""
    for rule in reversed(rules):
        verdict = rule.rules.verdict(rel[len(rule.prefix) :], is_dir)
        if verdict is not None:
            return verdict
    return False


def read_ignore_file(path: str) -> list[str]:
    """The lines of an ignore file (never following a symlink); [] when it cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return []
    with open(fd, "rb") as f:
        data = f.read(_IGNORE_FILE_LIMIT)
    return data.decode("utf-8", errors="replace").splitlines()


def iter_tree(
    root: Path | str,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    gitignore: bool = False,
    watch: Watch | None = None,
) -> Iterator[TreeEntry]:
    """Entries below `root` (not `root` itself), parents before children, names sorted.

    Symlinks are reported, never followed. Excluded and ignored directories are not entered.
    With `gitignore`, the .gitignore files of the tree apply as git applies them (each to its
    own directory and below, deeper files first). `watch`, when given, collects what the walk
    looked at besides the entries (see `Watch`).
    """
    filt = PathFilter(include, exclude, gitignore)
    if filt.empty:
        yield from _walk_all(str(root), "", watch)
    else:
        yield from _walk_filtered(str(root), "", filt, False, [], watch)


def _scan(directory: str, watch: Watch | None) -> list[os.DirEntry[str]]:
    if watch is not None:
        watch.append((directory, os.lstat(directory)))
    with os.scandir(directory) as it:
        return sorted(it, key=lambda de: de.name)


def _walk_all(directory: str, prefix: str, watch: Watch | None) -> Iterator[TreeEntry]:
    for de in _scan(directory, watch):
        st = de.stat(follow_symlinks=False)
        entry = TreeEntry(prefix + de.name, de.path, st)
        yield entry
        if stat.S_ISDIR(st.st_mode):
            yield from _walk_all(entry.path, entry.rel + "/", watch)


def _walk_filtered(
    directory: str,
    prefix: str,
    filt: PathFilter,
    inside_included: bool,
    rules: list[_IgnoreFile],
    watch: Watch | None,
) -> Iterator[TreeEntry]:
    entries = _scan(directory, watch)
    if filt.gitignore:
        rules = _with_ignore_file(rules, entries, prefix, watch)
    for de in entries:
        rel = prefix + de.name
        is_dir = de.is_dir(follow_symlinks=False)
        if rules and _ignored(rules, rel, is_dir):
            continue
        if filt.excluded(rel, is_dir):
            if is_dir and filt.reincludes:
                held = list(_walk_filtered(de.path, rel + "/", filt, inside_included, rules, watch))
                if held:
                    yield TreeEntry(rel, de.path, de.stat(follow_symlinks=False))
                    yield from held
            continue
        included = filt.included(rel, is_dir, inside_included)
        if not is_dir:
            if included:
                yield TreeEntry(rel, de.path, de.stat(follow_symlinks=False))
            continue
        entry = TreeEntry(rel, de.path, de.stat(follow_symlinks=False))
        below = _walk_filtered(entry.path, rel + "/", filt, included, rules, watch)
        if included:
            yield entry
            yield from below
        else:
            # Created only if something inside it is copied.
            held = list(below)
            if held:
                yield entry
                yield from held


def _with_ignore_file(
    rules: list[_IgnoreFile], entries: list[os.DirEntry[str]], prefix: str, watch: Watch | None
) -> list[_IgnoreFile]:
    for de in entries:
        if de.name == GITIGNORE and de.is_file(follow_symlinks=False):
            if watch is not None:
                watch.append((de.path, de.stat(follow_symlinks=False)))
            ignore_rules = IgnoreRules(read_ignore_file(de.path))
            if not ignore_rules.empty:
                return [*rules, _IgnoreFile(prefix, ignore_rules)]
    return rules
