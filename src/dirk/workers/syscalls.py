"""The libc calls Python lacks (mount, umount2, setns) and the mount table, for every worker.

The snapshotter mounts overlays, the executor unmounts network namespaces and its bundles tmpfs
and enters network namespaces: one set of ctypes bindings and one mountinfo parser serve both.
"""

from __future__ import annotations

import ctypes
import os
import re
from pathlib import Path

MS_RDONLY = 1
MNT_DETACH = 2
CLONE_NEWNET = 0x40000000

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
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.setns.restype = ctypes.c_int


def mount(source: str, target: Path, fstype: str, flags: int, data: str) -> int:
    """mount(2): 0 on success, else the errno."""
    rc = _libc.mount(source.encode(), os.fsencode(target), fstype.encode(), flags, data.encode())
    return 0 if rc == 0 else ctypes.get_errno()


def umount(target: Path | str, flags: int = 0) -> int:
    """umount2(2): 0 on success, else the errno (EINVAL: nothing is mounted there)."""
    return 0 if _libc.umount2(os.fsencode(target), flags) == 0 else ctypes.get_errno()


def setns(fd: int, nstype: int) -> None:
    """setns(2) for the calling thread; raises OSError."""
    if _libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


_OCTAL = re.compile(r"\\([0-7]{3})")


def mount_points() -> list[str]:
    """Every mount point of this mount namespace, as /proc/self/mountinfo lists them (its octal
    escapes of space, tab, newline and backslash decoded)."""
    points = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields = line.split(" ", 5)
            if len(fields) >= 5:
                points.append(_OCTAL.sub(lambda m: chr(int(m.group(1), 8)), fields[4]))
    return points


def is_mount_point(path: Path) -> bool:
    """Whether something is mounted exactly at `path`."""
    return str(path.absolute()) in mount_points()


def mounts_under(root: Path) -> list[Path]:
    """Mount points at or below `root`, deepest first."""
    prefix = str(root).rstrip("/")
    found = [p for p in mount_points() if p == prefix or p.startswith(prefix + "/")]
    found.sort(key=lambda p: p.count("/"), reverse=True)
    return [Path(p) for p in found]
