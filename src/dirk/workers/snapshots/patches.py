"""Git-style patches: applying one to a tree (`git apply`) and making one from two trees
(`git diff --no-index`), with the host's git binary.

`git diff --no-index` names files by the paths it is given and looks at symlinks themselves,
so the two trees are bind-mounted read-only at `a` and `b` of a scratch directory; the patch
then reads like `git diff` of a repository (`a/path`, `b/path`) and applies with `git apply`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs

from dirk.errors import PatchError, SnapshotError
from dirk.workers import syscalls

#: A binary-safe patch; renames as delete + add, as `git apply` wants them without a repo.
_DIFF_ARGS = ("diff", "--binary", "--no-prefix", "--no-renames", "--no-index", "--no-color")
MS_BIND = 4096
MS_REMOUNT = 32
MS_REC = 16384
#: git must neither read the host's nor the user's configuration, nor look for a repository.
_GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "HOME": "/nonexistent",
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LC_ALL": "C",
}


def git_env() -> dict[str, str]:
    """An environment for git that reads no configuration of the host or of a user."""
    return dict(_GIT_ENV)


def git_path() -> str:
    found = shutil.which("git")
    if found is None:
        raise SnapshotError("git is not installed on the engine's host: install the git package")
    return found


def apply_patch(directory: Path, patch: bytes) -> None:
    """Apply `patch` (as `git diff` writes it) inside `directory`; nothing changes on failure
    (`git apply` checks every hunk first)."""
    if not patch.strip():
        return
    result = subprocess.run(
        [git_path(), "apply", "--whitespace=nowarn", "-"],
        input=patch,
        cwd=directory,
        env=git_env(),
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        message = result.stderr.decode("utf-8", errors="replace").strip()
        raise PatchError(
            f"the patch does not apply: {message or 'git apply failed'}; make it against "
            "this directory's current contents"
        )


@contextmanager
def _bind_ro(source: Path, target: Path) -> Iterator[None]:
    target.mkdir()
    err = syscalls.mount(str(source), target, "", MS_BIND | MS_REC, "")
    if err:
        raise SnapshotError(f"could not bind-mount {source}: {os.strerror(err)}")
    try:
        err = syscalls.mount("", target, "", MS_BIND | MS_REMOUNT | syscalls.MS_RDONLY, "")
        if err:
            raise SnapshotError(f"could not make {target} read-only: {os.strerror(err)}")
        yield
    finally:
        if syscalls.umount(target) not in (0,):
            syscalls.umount(target, syscalls.MNT_DETACH)
        target.rmdir()


def diff_patch(before: Path, after: Path, scratch: Path) -> bytes:
    """A binary-safe git patch from `before` to `after`, renames as delete + add."""
    with tempfile.TemporaryDirectory(dir=scratch) as work:
        root = Path(work)
        with _bind_ro(before, root / "a"), _bind_ro(after, root / "b"):
            result = subprocess.run(
                [git_path(), *_DIFF_ARGS, "a", "b"],
                cwd=root,
                env=git_env(),
                capture_output=True,
                check=False,
            )
    if result.returncode not in (0, 1):
        message = result.stderr.decode("utf-8", errors="replace").strip()
        raise SnapshotError(f"git diff failed: {message}")
    return result.stdout


@attrs.frozen
class LineCounts:
    added: int = 0
    removed: int = 0


_HEADER = re.compile(rb"^(---|\+\+\+) (?:[ab]/)?(.*)$")


def line_counts(patch: bytes) -> dict[str, LineCounts]:
    """Added and removed lines per path (relative, as in the tree) of a `diff_patch`."""
    counts: dict[str, LineCounts] = {}
    path: str | None = None
    in_hunk = False
    old_name = ""
    for line in patch.split(b"\n"):
        if line.startswith(b"diff --git "):
            path, in_hunk, old_name = None, False, ""
            continue
        if not in_hunk:
            match = _HEADER.match(line)
            if match is not None:
                name = match.group(2).decode("utf-8", errors="surrogateescape")
                if match.group(1) == b"---":
                    old_name = name
                else:
                    path = old_name if name == "/dev/null" else name
                    counts.setdefault(path, LineCounts())
                continue
            if line.startswith(b"@@") and path is not None:
                in_hunk = True
            continue
        if line.startswith(b"@@"):
            continue
        assert path is not None
        current = counts[path]
        if line.startswith(b"+"):
            counts[path] = attrs.evolve(current, added=current.added + 1)
        elif line.startswith(b"-"):
            counts[path] = attrs.evolve(current, removed=current.removed + 1)
    return counts
