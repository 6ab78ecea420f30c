"""Resolve a container path inside a root filesystem on the host, as the container would.

An image's symlinks are container paths: an absolute link target is relative to the image's
root, never to the host's. Following them with the host's path resolution could read (or, for
callers that write, clobber) host files, so every component is walked here by hand.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The kernel's limit on symlinks followed in one lookup (ELOOP beyond it).
MAX_SYMLINKS = 40


def resolve_in_root(root: Path, path: str) -> Path:
    """The host path of container path `path` under `root`, symlinks followed inside `root`.

    Components that do not exist are kept as they are; the result never leaves `root`.
    """
    parts = [p for p in path.split("/") if p]
    resolved: list[str] = []
    hops = 0
    while parts:
        name = parts.pop(0)
        if name == ".":
            continue
        if name == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, name)
        try:
            target = os.readlink(candidate)
        except OSError:  # not a symlink, or missing: keep the name
            resolved.append(name)
            continue
        hops += 1
        if hops > MAX_SYMLINKS:
            raise OSError(f"too many levels of symbolic links in {path!r}")
        if target.startswith("/"):
            resolved = []
        parts = [p for p in target.split("/") if p] + parts
    return Path(root, *resolved)
