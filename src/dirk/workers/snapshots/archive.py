"""Unpack a tar archive (plain, gzip, bzip2 or xz) into a directory of a mounted root, the way
Dockerfile `ADD` does with a local archive.

Every member's path is resolved inside the root like any file operation (`fileops`), so a
symlink in the archive or the tree that points at "/etc" means the tree's /etc, and a member
naming `..` above the destination is refused. Ownership, modes and mtimes come from the archive.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile
from pathlib import Path

from dirk.errors import SnapshotPathError
from dirk.workers.snapshots.fileops import NEW_FILE, _ensure_dirs, _lstat, resolve_parts

_CHUNK = 1 << 20


def extract_archive(archive: Path, dst_root: Path, dst_path: str) -> None:
    """Unpack the archive file `archive` (a host path) into `dst_path` of `dst_root`."""
    dirs: list[tuple[Path, tarfile.TarInfo]] = []
    with _open(archive) as tar:
        for member in tar:
            name = posixpath.normpath(member.name.lstrip("/"))
            if name == ".":
                continue
            if name.startswith("../") or name == "..":
                raise SnapshotPathError(f"archive member {member.name!r} leaves the destination")
            path = posixpath.join(dst_path, name)
            parts = resolve_parts(dst_root, path, follow_last=False)
            if not parts:
                continue
            parent = _ensure_dirs(dst_root, parts[:-1])
            target = parent / parts[-1]
            existing = _lstat(target)
            if member.isdir():
                if existing is not None and not stat.S_ISDIR(existing.st_mode):
                    os.unlink(target)
                    existing = None
                if existing is None:
                    os.mkdir(target, 0o700)
                dirs.append((target, member))
                continue
            if existing is not None:
                if stat.S_ISDIR(existing.st_mode):
                    shutil.rmtree(target)
                else:
                    os.unlink(target)
            _member(tar, member, target, dst_root, dst_path)
    for target, member in reversed(dirs):
        _meta(target, member)


def _open(archive: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError) as exc:
        raise SnapshotPathError(f"cannot read {archive.name} as a tar archive: {exc}") from exc


def _member(
    tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path, root: Path, dst: str
) -> None:
    if member.isreg():
        source = tar.extractfile(member)
        assert source is not None
        fd = os.open(target, NEW_FILE, 0o600)
        try:
            while chunk := source.read(_CHUNK):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
    elif member.issym():
        os.symlink(member.linkname, target)
    elif member.islnk():
        linked = posixpath.join(dst, posixpath.normpath(member.linkname.lstrip("/")))
        first = root.joinpath(*resolve_parts(root, linked, follow_last=False))
        if _lstat(first) is None:
            raise SnapshotPathError(f"archive hard link {member.name} -> {linked} is broken")
        os.link(first, target, follow_symlinks=False)
        return
    elif member.ischr() or member.isblk() or member.isfifo():
        kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK if member.isblk() else stat.S_IFIFO
        os.mknod(target, kind | 0o600, os.makedev(member.devmajor, member.devminor))
    else:
        return
    _meta(target, member)


def _meta(target: Path, member: tarfile.TarInfo) -> None:
    os.chown(target, member.uid, member.gid, follow_symlinks=False)
    if not member.issym():
        os.chmod(target, stat.S_IMODE(member.mode))
    os.utime(target, (member.mtime, member.mtime), follow_symlinks=False)
