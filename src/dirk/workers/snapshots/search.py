"""Reads over a directory tree: glob matches, grep-like searches and content digests.

Each function takes a real directory (a snapshot mounted read-only) and never follows a
symlink out of it: walks report links as links, and named paths resolve inside the root.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path

import attrs

from dirk.errors import InvalidArgumentError, SnapshotPathError
from dirk.workers.snapshots.paths import join
from dirk.workers.snapshots.tree import iter_tree

#: A file with a NUL byte in its first this many bytes is binary and not searched (as ripgrep).
BINARY_PROBE = 8192


# --- glob --------------------------------------------------------------------------------------


def _translate_class(pattern: str, i: int) -> tuple[str, int]:
    """The regex of the bracket expression starting at pattern[i] == "["; (text, next index)."""
    j = i + 1
    if j < len(pattern) and pattern[j] in "!^":
        j += 1
    if j < len(pattern) and pattern[j] == "]":
        j += 1
    while j < len(pattern) and pattern[j] != "]":
        j += 1
    if j >= len(pattern):
        return re.escape("["), i + 1
    body = pattern[i + 1 : j]
    negate = body[:1] in ("!", "^")
    if negate:
        body = body[1:]
    body = body.replace("\\", "\\\\")
    return ("[^/" if negate else "[") + body + "]", j + 1


def glob_regex(pattern: str) -> re.Pattern[str]:
    """doublestar-style glob: `*` and `?` stay within one path component, `**` as a whole
    component spans any number of them, `[...]` is a class, `{a,b}` alternatives."""
    out: list[str] = []
    depth = 0
    i = 0
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if pattern.startswith("**", i) and (i == 0 or pattern[i - 1] == "/"):
                end = i + 2
                if end == n:
                    out.append(".*")
                    i = end
                    continue
                if pattern[end] == "/":
                    out.append("(?:.*/)?")
                    i = end + 1
                    continue
            out.append("[^/]*")
            while i < n and pattern[i] == "*":
                i += 1
            continue
        if c == "?":
            out.append("[^/]")
        elif c == "[":
            text, i = _translate_class(pattern, i)
            out.append(text)
            continue
        elif c == "{":
            out.append("(?:")
            depth += 1
        elif c == "}" and depth:
            out.append(")")
            depth -= 1
        elif c == "," and depth:
            out.append("|")
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(c))
        i += 1
    if depth:
        raise InvalidArgumentError(f"glob pattern {pattern!r} has an unclosed '{{': close it")
    return re.compile("".join(out) + r"\Z", re.DOTALL)


def glob(root: Path, pattern: str) -> list[str]:
    """Paths below `root` matching `pattern`, sorted; directories end with "/"."""
    if not pattern:
        raise InvalidArgumentError("a glob pattern must not be empty: use '**' for everything")
    regex = glob_regex(pattern.lstrip("/"))
    found = []
    for entry in iter_tree(root):
        if stat.S_ISCHR(entry.st.st_mode) and entry.st.st_rdev == 0:
            continue  # an overlay whiteout read from a lone layer: nothing is there
        if regex.match(entry.rel):
            found.append(entry.rel + "/" if entry.is_dir else entry.rel)
    return sorted(found)


# --- search ------------------------------------------------------------------------------------


@attrs.frozen
class Submatch:
    """One match within `SearchHit.matched_lines`; offsets are bytes."""

    start: int
    end: int
    text: str


@attrs.frozen
class SearchHit:
    """A matching line (or lines, for a multiline match) of one file, as ripgrep reports it."""

    file_path: str
    line_number: int
    absolute_offset: int
    matched_lines: str
    submatches: tuple[Submatch, ...]


@attrs.frozen
class SearchOptions:
    pattern: str
    literal: bool = False
    multiline: bool = False
    dotall: bool = False
    insensitive: bool = False
    skip_ignored: bool = False
    skip_hidden: bool = False
    files_only: bool = False
    limit: int | None = None
    paths: tuple[str, ...] = ()
    globs: tuple[str, ...] = ()

    def regex(self) -> re.Pattern[str]:
        source = re.escape(self.pattern) if self.literal else self.pattern
        flags = re.MULTILINE
        if self.insensitive:
            flags |= re.IGNORECASE
        if self.dotall:
            flags |= re.DOTALL
        try:
            return re.compile(source, flags)
        except re.error as exc:
            raise InvalidArgumentError(
                f"search pattern {self.pattern!r} is not a valid regular expression ({exc}): "
                "fix it, or pass literal: true to search for the text as it is"
            ) from None


def _nbytes(text: str) -> int:
    return len(text.encode("utf-8", "surrogateescape"))


def _hidden(rel: str) -> bool:
    return any(part.startswith(".") for part in rel.split("/"))


class _Globs:
    """ripgrep's --glob: gitignore-style globs selecting files; "!glob" leaves files out."""

    def __init__(self, globs: Sequence[str]) -> None:
        import pathspec  # only searches with globs need it (see `tree._spec`)

        self._spec = pathspec.GitIgnoreSpec.from_lines(globs) if globs else None
        self._positive = any(not g.startswith("!") for g in globs)

    def selects(self, rel: str) -> bool:
        if self._spec is None:
            return True
        verdict = self._spec.check_file(rel).include
        return (not self._positive) if verdict is None else verdict


def _files(root: Path, start: tuple[str, ...], opts: SearchOptions) -> Iterator[tuple[str, str]]:
    """(path shown, host path) of each regular file to search below `root/start`."""
    base = root.joinpath(*start)
    prefix = "/".join(start)
    try:
        st = os.lstat(base)
    except FileNotFoundError:
        raise SnapshotPathError(f"{join(start)}: no such file or directory") from None
    if stat.S_ISREG(st.st_mode):
        yield prefix, str(base)
        return
    if not stat.S_ISDIR(st.st_mode):
        return
    globs = _Globs(opts.globs)
    for entry in iter_tree(base, gitignore=opts.skip_ignored):
        if not stat.S_ISREG(entry.st.st_mode):
            continue
        if opts.skip_hidden and _hidden(entry.rel):
            continue
        if not globs.selects(entry.rel):
            continue
        yield (f"{prefix}/{entry.rel}" if prefix else entry.rel), entry.path


def _read_text(path: str) -> str | None:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with open(fd, "rb") as f:
        data = f.read()
    if b"\0" in data[:BINARY_PROBE]:
        return None
    return data.decode("utf-8", "surrogateescape")


def _line_hits(shown: str, text: str, regex: re.Pattern[str]) -> Iterator[SearchHit]:
    offset = 0
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        body = line.rstrip("\r\n")
        subs = tuple(
            Submatch(_nbytes(body[: m.start()]), _nbytes(body[: m.end()]), m.group())
            for m in regex.finditer(body)
        )
        if subs:
            yield SearchHit(shown, number, offset, line, subs)
        offset += _nbytes(line)


def _multiline_hits(shown: str, text: str, regex: re.Pattern[str]) -> Iterator[SearchHit]:
    starts = [0]
    for m in re.finditer("\n", text):
        starts.append(m.end())
    last_end = -1
    for m in regex.finditer(text):
        if m.end() == m.start() and m.start() == len(text):
            continue
        first = _line_of(starts, m.start())
        if m.start() < last_end:
            continue
        end_line = _line_of(starts, max(m.end() - 1, m.start()))
        begin = starts[first]
        stop = starts[end_line + 1] if end_line + 1 < len(starts) else len(text)
        lines = text[begin:stop]
        sub = Submatch(_nbytes(text[begin : m.start()]), _nbytes(text[begin : m.end()]), m.group())
        last_end = stop
        yield SearchHit(shown, first + 1, _nbytes(text[:begin]), lines, (sub,))


def _line_of(starts: list[int], index: int) -> int:
    lo, hi = 0, len(starts) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if starts[mid] <= index:
            lo = mid
        else:
            hi = mid - 1
    return lo


def search(root: Path, starts: Sequence[tuple[str, ...]], opts: SearchOptions) -> list[SearchHit]:
    """What `opts` finds in the files below each of `starts` (resolved paths inside `root`)."""
    regex = opts.regex()
    hits: list[SearchHit] = []
    seen: set[str] = set()
    for start in starts:
        for shown, path in _files(root, start, opts):
            if shown in seen:
                continue
            seen.add(shown)
            text = _read_text(path)
            if text is None:
                continue
            found = _multiline_hits if opts.multiline else _line_hits
            for hit in found(shown, text, regex):
                if opts.files_only:
                    hits.append(SearchHit(shown, 0, 0, "", ()))
                else:
                    hits.append(hit)
                if opts.limit is not None and len(hits) >= opts.limit:
                    return hits
                if opts.files_only:
                    break
    return hits


# --- digests -----------------------------------------------------------------------------------


def _file_sha(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with open(fd, "rb", buffering=0) as f:
        return hashlib.file_digest(f, "sha256").digest()


def file_digest(path: Path, name: str, *, metadata: bool = True) -> str:
    """ "sha256:..." of a file's contents; with `metadata`, also of its name, mode and owner."""
    if not metadata:
        return "sha256:" + _file_sha(str(path)).hex()
    st = os.lstat(path)
    h = hashlib.sha256(b"dirk file v1\n")
    h.update(b"%s\0%o\0%d:%d\0" % (name.encode(), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid))
    h.update(_file_sha(str(path)))
    return "sha256:" + h.hexdigest()


def tree_digest(root: Path) -> str:
    """ "sha256:..." of everything below `root`: names, kinds, modes, owners, contents and
    symlink targets (not times), so equal trees have equal digests wherever they came from."""
    h = hashlib.sha256(b"dirk tree v1\n")
    for entry in iter_tree(root):
        st = entry.st
        mode = st.st_mode
        if stat.S_ISREG(mode):
            kind, payload = b"f", _file_sha(entry.path)
        elif stat.S_ISDIR(mode):
            kind, payload = b"d", b""
        elif stat.S_ISLNK(mode):
            kind, payload = b"l", os.fsencode(os.readlink(entry.path))
        elif stat.S_ISCHR(mode) and st.st_rdev == 0:
            continue  # an overlay whiteout read from a lone layer: nothing is there
        else:
            kind, payload = b"o", b"%d" % st.st_rdev
        h.update(
            b"%s\0%s\0%o\0%d:%d\0%d\0%s\n"
            % (
                kind,
                os.fsencode(entry.rel),
                stat.S_IMODE(mode),
                st.st_uid,
                st.st_gid,
                len(payload),
                payload,
            )
        )
    return "sha256:" + h.hexdigest()
