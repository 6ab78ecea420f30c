"""overlayfs mounts through libc's mount(2)/umount2(2): no subprocess on the hot path.

Legacy mount(2) copies at most one page of option data, so callers check `fits` first and
flatten layers when a stack is too deep for one mount.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Sequence
from pathlib import Path

from dirk.errors import SnapshotError
from dirk.workers import syscalls

#: mount(2) copies one page of options; the string and its NUL must fit.
MOUNT_DATA_LIMIT = 4095
#: The kernel's limit on lower layers in one overlay (OVL_MAX_STACK).
KERNEL_MAX_LOWERS = 500

#: Upper dirs must stay plain overlay layers, usable under any other stack: no redirects, no
#: metadata-only copy-ups, no index tied to one set of lowers, whatever the module defaults.
_PORTABLE = "index=off,metacopy=off,redirect_dir=off"


def _escape(path: Path) -> str:
    """overlayfs splits options on "," and lower dirs on ":": escape both in paths."""
    return str(path).replace("\\", "\\\\").replace(",", "\\,").replace(":", "\\:")


def options(
    lowers: Sequence[Path],
    upper: Path | None = None,
    work: Path | None = None,
    *,
    volatile: bool = False,
) -> str:
    """The option string for `lowers` (top first) and, for a writable mount, upper and work."""
    if not lowers:
        raise SnapshotError("an overlay needs at least one lower directory")
    parts = ["lowerdir=" + ":".join(_escape(p) for p in lowers)]
    if upper is not None and work is not None:
        parts.append("upperdir=" + _escape(upper))
        parts.append("workdir=" + _escape(work))
        if volatile:
            parts.append("volatile")
    parts.append(_PORTABLE)
    return ",".join(parts)


def fits(data: str) -> bool:
    return len(data.encode()) <= MOUNT_DATA_LIMIT


def mount_overlay(target: Path, data: str, *, readonly: bool = False) -> None:
    """Mount an overlay at `target`; raises SnapshotError naming the options on failure."""
    if not fits(data):
        raise SnapshotError(
            f"overlay options are {len(data)} bytes, over the kernel's one-page limit: "
            "the snapshot must be flattened first"
        )
    flags = syscalls.MS_RDONLY if readonly else 0
    err = syscalls.mount("overlay", target, "overlay", flags, data)
    if err:
        raise SnapshotError(
            f"could not mount overlayfs at {target}: {os.strerror(err)} (options: {data}). "
            "overlayfs needs root and all directories on one filesystem; `dmesg` says more"
        )


def unmount(target: Path, *, retries: int = 20) -> None:
    """Unmount `target`; a busy mount is retried briefly, then detached lazily.

    Not mounted is fine: release and commit may both try.
    """
    for attempt in range(retries + 1):
        err = syscalls.umount(target)
        if err in (0, errno.EINVAL, errno.ENOENT):
            return
        if err != errno.EBUSY:
            raise SnapshotError(f"could not unmount {target}: {os.strerror(err)}")
        if attempt < retries:
            time.sleep(0.005 * (attempt + 1))
    detach(target)


def detach(target: Path) -> None:
    """Lazy unmount: gone from the tree now, freed when its last user lets go."""
    err = syscalls.umount(target, syscalls.MNT_DETACH)
    if err not in (0, errno.EINVAL, errno.ENOENT):
        raise SnapshotError(f"could not detach mount {target}: {os.strerror(err)}")
