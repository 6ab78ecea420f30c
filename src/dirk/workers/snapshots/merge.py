"""Merging changesets with git, in a throwaway repository made inside the tree itself.

The tree (the merged `before` of every changeset) is committed once; each changeset's patch
becomes a branch from that commit; the first branch ("ours") merges the others (two branches:
a 3-way merge, with `-X ours`/`-X theirs` when asked; more: an octopus merge). The repository is
deleted afterwards, so the tree holds only the merged files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from dirk.errors import PatchError
from dirk.workers.snapshots.changes import TreeChanges
from dirk.workers.snapshots.patches import git_env, git_path

_EPHEMERAL = (
    "-c", "maintenance.auto=false", "-c", "gc.auto=0", "-c", "core.hooksPath=/dev/null",
    "-c", "commit.gpgSign=false", "-c", "init.defaultBranch=base", "-c", "safe.directory=*",
)  # fmt: skip
_IDENTITY = {
    "GIT_AUTHOR_NAME": "dirk",
    "GIT_AUTHOR_EMAIL": "dirk@localhost",
    "GIT_COMMITTER_NAME": "dirk",
    "GIT_COMMITTER_EMAIL": "dirk@localhost",
}


def _git(work: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [git_path(), *_EPHEMERAL, *args],
        cwd=work,
        env={**git_env(), **_IDENTITY},
        input=stdin,
        capture_output=True,
        check=False,
    )


def _must(result: subprocess.CompletedProcess[bytes], what: str) -> None:
    if result.returncode != 0:
        output = (result.stdout + result.stderr).decode("utf-8", errors="replace").strip()
        raise PatchError(f"merging changesets failed ({what}): {output}")


def conflicts(ours: TreeChanges, theirs: TreeChanges) -> list[str]:
    """Dagger's file-level conflicts: a file added by both, modified by both, or modified by
    one and removed by the other (directories added by both merge fine)."""
    found: list[str] = []
    for path in ours.added:
        if not path.endswith("/") and path in theirs.added:
            found.append(f"{path}: added in both changesets")
    for path in ours.modified:
        if path in theirs.modified:
            found.append(f"{path}: modified in both changesets")
        elif path in theirs.all_removed:
            found.append(f"{path}: modified in one changeset and removed in the other")
    for path in ours.all_removed:
        if path in theirs.modified:
            found.append(f"{path}: modified in one changeset and removed in the other")
    return found


def merge_patches(work: Path, patches: Sequence[bytes], on_conflict: str) -> None:
    """Merge `patches` (each made against the tree at `work`) into `work`."""
    if (work / ".git").exists():
        shutil.rmtree(work / ".git")
    try:
        _must(_git(work, "init", "-q"), "git init")
        _must(_git(work, "add", "-A", "--force"), "git add")
        _must(_git(work, "commit", "-q", "--allow-empty", "-m", "base"), "git commit")
        branches = []
        for index, patch in enumerate(patches):
            name = "ours" if index == 0 else f"side{index}"
            branches.append(name)
            _must(_git(work, "checkout", "-q", "-b", name, "base"), "git checkout")
            if patch.strip():
                _must(_git(work, "apply", "--index", "-", stdin=patch), f"apply patch {index}")
            _must(_git(work, "commit", "-q", "--allow-empty", "-m", name), "git commit")
        _must(_git(work, "checkout", "-q", "ours"), "git checkout")
        args = ["merge", "--no-edit", "--no-commit", "-q"]
        if on_conflict == "PREFER_OURS":
            args += ["-X", "ours"]
        elif on_conflict == "PREFER_THEIRS":
            args += ["-X", "theirs"]
        merged = _git(work, *args, *branches[1:])
        if merged.returncode != 0:
            if on_conflict in ("FAIL", "FAIL_EARLY") or len(branches) > 2:
                _must(merged, "the changesets conflict")
            _resolve_modify_delete(work, on_conflict)
    finally:
        shutil.rmtree(work / ".git", ignore_errors=True)


def _resolve_modify_delete(work: Path, on_conflict: str) -> None:
    """Modify/delete conflicts, which `-X` does not settle: the file stays unless the side
    that is preferred deleted it. Content conflicts keep git's markers."""
    status = _git(work, "status", "--porcelain", "-z")
    _must(status, "git status")
    for record in status.stdout.split(b"\0"):
        code, path = record[:2], record[3:].decode("utf-8", errors="surrogateescape")
        deleted_by_us, deleted_by_them = code == b"DU", code == b"UD"
        drop = (on_conflict == "PREFER_OURS" and deleted_by_us) or (
            on_conflict == "PREFER_THEIRS" and deleted_by_them
        )
        if drop and os.path.lexists(work / path):
            os.unlink(work / path)
