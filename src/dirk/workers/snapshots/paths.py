"""Container paths: parse them, and resolve symlinks as if a given tree were "/".

Resolution is written once, over a `readlink` callback, so a real directory (a mounted root) and
a stack of layer directories (read without mounting) resolve a path the same way.
"""

from __future__ import annotations

from collections.abc import Callable

from dirk.errors import InvalidArgumentError

#: The kernel's limit on symlinks followed in one lookup (ELOOP past it).
MAX_SYMLINKS = 40

Parts = tuple[str, ...]
#: Returns the target of the symlink at `parts` (already resolved up to the last component),
#: or None when there is no symlink there (a directory, a file, or nothing).
Readlink = Callable[[Parts], str | None]


def clean_path(path: str) -> Parts:
    """Split a container path into components; a relative path is taken from "/".

    ".." is applied lexically and may not climb above "/": such a path is an escape attempt.
    """
    if "\0" in path:
        raise InvalidArgumentError(f"path {path!r} contains a NUL byte: remove it")
    parts: list[str] = []
    for comp in path.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if not parts:
                raise InvalidArgumentError(
                    f"path {path!r} climbs above the root directory with '..': "
                    "use a path inside the tree"
                )
            parts.pop()
        else:
            parts.append(comp)
    return tuple(parts)


def join(parts: Parts) -> str:
    """The absolute container path of `parts`."""
    return "/" + "/".join(parts)


def resolve(parts: Parts, readlink: Readlink, *, follow_last: bool = True) -> Parts:
    """Follow symlinks component by component; absolute targets and ".." stay inside the root.

    Components after a missing one are kept as they are, so the result names where a new entry
    would be created. With `follow_last=False` a symlink in the last position is not followed.
    """
    todo = list(reversed(parts))
    done: list[str] = []
    followed = 0
    while todo:
        comp = todo.pop()
        if comp in ("", "."):
            continue
        if comp == "..":
            if done:
                done.pop()
            continue
        if not todo and not follow_last:
            done.append(comp)
            break
        target = readlink((*done, comp))
        if target is None:
            done.append(comp)
            continue
        followed += 1
        if followed > MAX_SYMLINKS:
            raise InvalidArgumentError(
                f"too many levels of symbolic links resolving {join(parts)!r}: "
                "a symlink loop in the tree"
            )
        if target.startswith("/"):
            done = []
        todo.extend(reversed(target.split("/")))
    return tuple(done)
