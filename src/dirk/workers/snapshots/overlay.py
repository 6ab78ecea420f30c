"""overlayfs mounts through libc's mount(2)/umount2(2): no subprocess on the hot path.

Legacy mount(2) copies at most one page of option data, so callers check `fits` first and
flatten layers when a stack is too deep for one mount.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path

from dirk.errors import SnapshotError

MS_RDONLY = 1
MNT_DETACH = 2
#: mount(2) copies one page of options; the string and its NUL must fit.
MOUNT_DATA_LIMIT = 4095
#: The kernel's limit on lower layers in one overlay (OVL_MAX_STACK).
KERNEL_MAX_LOWERS = 500

#: Upper dirs must stay plain overlay layers, usable under any other stack: no redirects, no
#: metadata-only copy-ups, no index tied to one set of lowers, whatever the module defaults.
_PORTABLE = "index=off,metacopy=off,redirect_dir=off"

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
_libc.mount.restype = ctypes.c_int
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.umount2.restype = ctypes.c_int


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
    flags = MS_RDONLY if readonly else 0
    rc = _libc.mount(b"overlay", os.fsencode(target), b"overlay", flags, data.encode())
    if rc != 0:
        err = ctypes.get_errno()
        raise SnapshotError(
            f"could not mount overlayfs at {target}: {os.strerror(err)} (options: {data}). "
            "overlayfs needs root and all directories on one filesystem; `dmesg` says more"
        )


def unmount(target: Path, *, retries: int = 20) -> None:
    """Unmount `target`; a busy mount is retried briefly, then detached lazily.

    Not mounted is fine: release and commit may both try.
    """
    path = os.fsencode(target)
    for attempt in range(retries + 1):
        if _libc.umount2(path, 0) == 0:
            return
        err = ctypes.get_errno()
        if err in (errno.EINVAL, errno.ENOENT):
            return
        if err != errno.EBUSY:
            raise SnapshotError(f"could not unmount {target}: {os.strerror(err)}")
        if attempt < retries:
            time.sleep(0.005 * (attempt + 1))
    detach(target)


def detach(target: Path) -> None:
    """Lazy unmount: gone from the tree now, freed when its last user lets go."""
    if _libc.umount2(os.fsencode(target), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):
            raise SnapshotError(f"could not detach mount {target}: {os.strerror(err)}")


_OCTAL = re.compile(r"\\([0-7]{3})")


def mounts_under(root: Path) -> list[Path]:
    """Mount points at or below `root` in this mount namespace, deepest first."""
    prefix = str(root).rstrip("/")
    found: list[str] = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields = line.split(" ", 5)
            if len(fields) < 5:
                continue
            point = _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), fields[4])
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    found.sort(key=lambda p: p.count("/"), reverse=True)
    return [Path(p) for p in found]
