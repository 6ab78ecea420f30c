"""Glob matching, grep-like search and digests over a directory tree."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dirk.errors import InvalidArgumentError, SnapshotPathError
from dirk.workers.snapshots.search import (
    SearchOptions,
    file_digest,
    glob,
    glob_regex,
    search,
    tree_digest,
)


def _tree(root: Path) -> Path:
    files = {
        "README.md": "hello world\nHello again\n",
        "src/main.py": "print('hello')\nx = 1\n",
        "src/lib/util.py": "def hello():\n    return 42\n",
        ".hidden/secret.txt": "hello hidden\n",
        ".gitignore": "*.log\n",
        "debug.log": "hello log\n",
        "bin.dat": "hello\0binary",
    }
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "link").symlink_to("/etc/passwd")
    return root


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("*.py", "main.py", True),
        ("*.py", "src/main.py", False),
        ("**/*.py", "src/main.py", True),
        ("**/*.py", "main.py", True),
        ("src/**", "src/a/b", True),
        ("src/*/b", "src/a/b", True),
        ("src/*/b", "src/a/c/b", False),
        ("?.md", "a.md", True),
        ("[ab].md", "c.md", False),
        ("[!ab].md", "c.md", True),
        ("{src,lib}/*.py", "lib/x.py", True),
        ("a.b", "aXb", False),
    ],
)
def test_glob_patterns(pattern: str, path: str, matches: bool) -> None:
    assert bool(glob_regex(pattern).match(path)) is matches


@given(st.text(alphabet="ab/.", max_size=12))
def test_star_star_matches_every_path(path: str) -> None:
    assert glob_regex("**").match(path)


def test_glob_lists_files_and_directories_without_following_links(tmp_path: Path) -> None:
    root = _tree(tmp_path / "t")
    assert glob(root, "**/*.py") == ["src/lib/util.py", "src/main.py"]
    assert glob(root, "src/*") == ["src/lib/", "src/main.py"]
    assert glob(root, "link") == ["link"]
    with pytest.raises(InvalidArgumentError, match="unclosed"):
        glob(root, "{a,b")


def _opts(pattern: str, **kwargs: object) -> SearchOptions:
    return SearchOptions(pattern=pattern, **kwargs)  # type: ignore[arg-type]


def test_search_reports_lines_offsets_and_submatches(tmp_path: Path) -> None:
    root = _tree(tmp_path / "t")
    hits = search(root, [()], _opts("hel+o"))
    assert [(h.file_path, h.line_number) for h in hits] == [
        (".hidden/secret.txt", 1),
        ("README.md", 1),
        ("debug.log", 1),
        ("src/lib/util.py", 1),
        ("src/main.py", 1),
    ]  # bin.dat is binary, link is not a regular file
    readme = hits[1]
    assert readme.matched_lines == "hello world\n" and readme.absolute_offset == 0
    assert [(s.start, s.end, s.text) for s in readme.submatches] == [(0, 5, "hello")]
    again = search(root, [("README.md",)], _opts("again"))
    assert again[0].line_number == 2 and again[0].absolute_offset == len("hello world\n")
    assert again[0].submatches[0].start == 6


def test_search_options(tmp_path: Path) -> None:
    root = _tree(tmp_path / "t")
    assert len(search(root, [("README.md",)], _opts("hello", insensitive=True))) == 2
    assert search(root, [("src",)], _opts("print(", literal=True))[0].file_path == "src/main.py"
    shown = {h.file_path for h in search(root, [()], _opts("hello", skip_hidden=True))}
    assert ".hidden/secret.txt" not in shown and "README.md" in shown
    shown = {h.file_path for h in search(root, [()], _opts("hello", skip_ignored=True))}
    assert "debug.log" not in shown and "README.md" in shown
    shown = {h.file_path for h in search(root, [()], _opts("hello", globs=("*.py",)))}
    assert shown == {"src/main.py", "src/lib/util.py"}
    shown = {h.file_path for h in search(root, [()], _opts("hello", globs=("!*.py",)))}
    assert "src/main.py" not in shown and "README.md" in shown
    files = search(root, [()], _opts("hello", files_only=True, insensitive=True))
    assert len(files) == len({h.file_path for h in files}) == 5
    assert len(search(root, [()], _opts("hello", limit=2))) == 2


def test_multiline_and_dotall(tmp_path: Path) -> None:
    root = _tree(tmp_path / "t")
    assert search(root, [("src",)], _opts(r"hello\(\):\n\s+return")) == []
    hits = search(root, [("src",)], _opts(r"hello\(\):\n\s+return", multiline=True))
    assert len(hits) == 1
    hit = hits[0]
    assert hit.line_number == 1 and hit.matched_lines == "def hello():\n    return 42\n"
    assert search(root, [("src",)], _opts("hello.*return", multiline=True)) == []
    assert len(search(root, [("src",)], _opts("hello.*return", multiline=True, dotall=True))) == 1


def test_search_errors_name_the_problem(tmp_path: Path) -> None:
    root = _tree(tmp_path / "t")
    with pytest.raises(InvalidArgumentError, match="literal: true"):
        search(root, [()], _opts("a("))
    with pytest.raises(SnapshotPathError, match="/nope: no such file or directory"):
        search(root, [("nope",)], _opts("a"))


def test_digests_cover_content_and_metadata(tmp_path: Path) -> None:
    a = _tree(tmp_path / "a")
    b = _tree(tmp_path / "b")
    assert tree_digest(a) == tree_digest(b)
    os.utime(b / "README.md", (1, 1))
    assert tree_digest(a) == tree_digest(b)  # times are not covered
    os.chmod(b / "README.md", 0o600)
    assert tree_digest(a) != tree_digest(b)
    f = a / "README.md"
    assert file_digest(f, "README.md", metadata=False) == (
        "sha256:" + hashlib.sha256(f.read_bytes()).hexdigest()
    )
    assert file_digest(f, "README.md") != file_digest(b / "README.md", "README.md")
