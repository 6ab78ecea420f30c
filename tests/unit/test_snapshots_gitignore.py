"""The tree walker's filters: include/exclude globs and `.gitignore` files, checked against
hand-picked cases and, for random trees and ignore files, against git itself."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dirk.workers.snapshots.tree import PathFilter, iter_tree


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _walk(root: Path, **kwargs: object) -> list[str]:
    return [e.rel + ("/" if e.is_dir else "") for e in iter_tree(root, **kwargs)]  # type: ignore[arg-type]


def test_exclude_globs_follow_gitignore_rules(tmp_path: Path) -> None:
    root = _tree(
        tmp_path / "t",
        {"a.log": "", "keep.log": "", "sub/b.log": "", "top": "", "sub/top": "", "build/x": ""},
    )
    (root / "sub/build").mkdir()
    got = _walk(root, exclude=["*.log", "!keep.log", "/top", "build/"])
    assert got == ["keep.log", "sub/", "sub/top"]


def test_double_star_and_include_keep_no_empty_unrelated_directories(tmp_path: Path) -> None:
    root = _tree(
        tmp_path / "t",
        {"src/a.py": "", "src/deep/er/b.py": "", "src/c.txt": "", "docs/d.md": "", "e.py": ""},
    )
    (root / "empty").mkdir()
    got = _walk(root, include=["src/**/*.py"])
    assert got == ["src/", "src/a.py", "src/deep/", "src/deep/er/", "src/deep/er/b.py"]


def test_a_later_negated_include_deselects_below_a_selected_directory(tmp_path: Path) -> None:
    root = _tree(tmp_path / "t", {"app/main.py": "", "app/gen/out.py": "", "other": ""})
    assert _walk(root, include=["app/", "!app/gen/"]) == ["app/", "app/main.py"]


def test_gitignore_files_apply_to_their_directory_and_below(tmp_path: Path) -> None:
    root = _tree(
        tmp_path / "t",
        {
            ".gitignore": "*.o\n/only-top\nbuild/\n",
            "a.o": "",
            "only-top": "",
            "main.c": "",
            "build/x": "",
            "lib/.gitignore": "!keep.o\n*.tmp\n",
            "lib/keep.o": "",
            "lib/drop.o": "",
            "lib/only-top": "",
            "lib/t.tmp": "",
            "other/t.tmp": "",
        },
    )
    got = _walk(root, gitignore=True)
    assert got == [
        ".gitignore",
        "lib/",
        "lib/.gitignore",
        "lib/keep.o",
        "lib/only-top",
        "main.c",
        "other/",
        "other/t.tmp",
    ]


def test_path_filter_without_patterns_is_empty() -> None:
    assert PathFilter().empty
    assert not PathFilter(gitignore=True).empty
    assert PathFilter(exclude=["", "  "]).empty


_NAMES = st.sampled_from(["a", "b", "c.txt", "d.log", "e.py"])
_PATTERNS = st.sampled_from(
    [
        "*.log",
        "!*.log",
        "a",
        "/a",
        "a/",
        "b/**",
        "**/c.txt",
        "!c.txt",
        "*.py",
        "!e.py",
        "b/*.txt",
        "a/**/d.log",
        "?.txt",
        "[ab]",
        "*",
        "**",
        "b/",
        "!b/",
        "/b",
        "!a",
        "**/",
        "*/",
        "/*/",
        "a/**/",
        "a/*",
        "*/**",
        "**/*/**",
        "**/*/**/",
        "!b/**",
        "!d.log/",
        "a/**/b",
    ]
)


@st.composite
def _repos(draw: st.DrawFn) -> tuple[list[str], dict[str, list[str]]]:
    files = draw(
        st.lists(st.lists(_NAMES, min_size=1, max_size=3).map("/".join), min_size=1, max_size=8)
    )
    ignore_dirs = draw(
        st.lists(st.sampled_from(["", "a", "b", "a/b", "d.log", "b/a"]), max_size=3, unique=True)
    )
    ignores = {d: draw(st.lists(_PATTERNS, min_size=1, max_size=4)) for d in ignore_dirs}
    return files, ignores


def _build(root: Path, files: list[str], ignores: dict[str, list[str]]) -> bool:
    """Lay out the tree; False when the drawn paths clash (a file where a directory goes)."""
    try:
        for rel in files:
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_dir():
                return False
            path.write_text(rel)
        for d, patterns in ignores.items():
            (root / d).mkdir(parents=True, exist_ok=True)
            (root / d / ".gitignore").write_text("\n".join(patterns) + "\n")
    except (FileExistsError, NotADirectoryError):
        return False
    return True


def _git_files(root: Path) -> set[str]:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    subprocess.run(["git", "init", "-q", str(root)], check=True, env=env)
    out = subprocess.run(
        ["git", "-C", str(root), "ls-files", "--others", "--exclude-standard", "-z"],
        check=True,
        capture_output=True,
        env=env,
    ).stdout
    return {p for p in out.decode().split("\0") if p}


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(repo=_repos())
# The root's "b/**" does not ignore the directory b itself, so b/.gitignore is read and its
# "!c.txt" keeps b/c.txt.
@example(repo=(["a/a", "b/c.txt"], {"": ["b/**"], "b": ["!c.txt"], "a": ["*.log"]}))
# "[ab]" ignores the directory d.log/a; "!*.log" matches d.log, never what is inside it.
@example(repo=(["d.log/a/c.txt"], {"": ["[ab]", "!*.log"]}))
# "a/**/" is the directories inside a, not a itself: a/c.txt stays, a/b/c.txt goes.
@example(repo=(["a/c.txt", "a/b/c.txt"], {"": ["a/**/"]}))
def test_gitignore_walk_keeps_the_files_git_keeps(
    tmp_path_factory: pytest.TempPathFactory, repo: tuple[list[str], dict[str, list[str]]]
) -> None:
    files, ignores = repo
    root = tmp_path_factory.mktemp("repo")
    if not _build(root, files, ignores):
        return
    ours = {e.rel for e in iter_tree(root, gitignore=True) if not e.is_dir}
    assert ours == _git_files(root)
