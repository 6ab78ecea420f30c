"""File operations on a mounted root (an overlay's merged dir), as if that root were "/".

Every path is resolved inside the root first (`resolve_in_root`): a symlink in the tree that
points at "/etc/passwd" means the tree's /etc/passwd, never the host's. Nothing runs in the
tree while these operate, so resolving first and acting second is safe.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Sequence
from pathlib import Path

from dirk.errors import InvalidArgumentError, SnapshotPathError
from dirk.workers.snapshots.layerview import OVERLAY_XATTR_PREFIX
from dirk.workers.snapshots.paths import Parts, Readlink, clean_path, join, resolve
from dirk.workers.snapshots.tree import iter_tree

StrPath = str | Path
DIR_MODE = 0o755
#: Flags creating a new file that must not exist yet and must not be a symlink.
NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def root_readlink(root: Path) -> Readlink:
    """A `paths.resolve` callback reading symlinks of a real directory tree."""

    def readlink(parts: Parts) -> str | None:
        try:
            return os.readlink(root.joinpath(*parts))
        except OSError:
            return None  # not a symlink, missing, or below a non-directory

    return readlink


def resolve_parts(root: Path, path: str, *, follow_last: bool = True) -> Parts:
    return resolve(clean_path(path), root_readlink(root), follow_last=follow_last)


def resolve_in_root(root: Path, path: str) -> Path:
    """The host path of container path `path` in `root`, all symlinks followed inside `root`."""
    return root.joinpath(*resolve_parts(root, path))


def _lstat(path: StrPath) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise


def _ensure_dirs(root: Path, parts: Parts) -> Path:
    """Create the resolved directory `parts` and its missing parents (0755, root-owned)."""
    current = root
    for i, comp in enumerate(parts):
        current = current / comp
        st = _lstat(current)
        if st is None:
            os.mkdir(current, DIR_MODE)
            os.chmod(current, DIR_MODE)
        elif not stat.S_ISDIR(st.st_mode):
            raise SnapshotPathError(
                f"{join(parts[: i + 1])} is not a directory, so nothing can be created below it"
            )
    return current


def write_file(
    root: Path, path: str, data: bytes, mode: int = 0o644, uid: int = 0, gid: int = 0
) -> None:
    """Write `data` at `path` (a symlink there is followed inside root); parents made 0755."""
    parts = resolve_parts(root, path)
    if not parts:
        raise InvalidArgumentError(f"cannot write a file at {path!r}: it is the root directory")
    parent = _ensure_dirs(root, parts[:-1])
    target = parent / parts[-1]
    _clear_for_file(target, join(parts))
    fd = os.open(target, NEW_FILE, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fchown(fd, uid, gid)
        os.fchmod(fd, stat.S_IMODE(mode))
    finally:
        os.close(fd)


def _clear_for_file(target: Path, shown: str) -> None:
    st = _lstat(target)
    if st is None:
        return
    if stat.S_ISDIR(st.st_mode):
        raise SnapshotPathError(f"cannot write file {shown}: a directory is there")
    os.unlink(target)


def make_dir(root: Path, path: str, mode: int = 0o755) -> None:
    """Create directory `path` with `mode`; parents 0755. An existing directory is kept as is."""
    parts = resolve_parts(root, path)
    if not parts:
        return
    parent = _ensure_dirs(root, parts[:-1])
    target = parent / parts[-1]
    st = _lstat(target)
    if st is not None:
        if not stat.S_ISDIR(st.st_mode):
            raise SnapshotPathError(f"cannot create directory {join(parts)}: a file is there")
        return
    os.mkdir(target, 0o700)
    os.chmod(target, stat.S_IMODE(mode))


def remove(root: Path, path: str, allow_missing: bool = True) -> None:
    """Remove the file, symlink (not its target) or directory tree at `path`."""
    parts = resolve_parts(root, path, follow_last=False)
    if not parts:
        raise InvalidArgumentError("cannot remove the root directory: remove its entries instead")
    target = root.joinpath(*parts)
    st = _lstat(target)
    if st is None:
        if allow_missing:
            return
        raise SnapshotPathError(f"cannot remove {join(parts)}: no such file or directory")
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(target)
    else:
        os.unlink(target)


def copy_into(
    src_root: Path,
    src_path: str,
    dst_root: Path,
    dst_path: str,
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    owner: tuple[int, int] | None = None,
    mode: int | None = None,
    gitignore: bool = False,
) -> None:
    """Copy `src_path` of one tree to `dst_path` of another.

    A directory's contents go into `dst_path` (created, taking the source directory's metadata,
    when missing); a file is written at `dst_path` exactly. Modes, owners, mtimes, symlinks (as
    links), hardlinks within the copy and xattrs are kept; `owner` and `mode` override them for
    every copied entry (`mode` never applies to symlinks). Filters (and `gitignore`: the source's
    .gitignore files) apply to directory copies.
    """
    src_parts = resolve_parts(src_root, src_path)
    src = src_root.joinpath(*src_parts)
    src_st = _lstat(src)
    if src_st is None:
        raise SnapshotPathError(f"cannot copy {join(src_parts)}: no such file or directory")
    copier = Copier(owner=owner, mode=mode)
    if not stat.S_ISDIR(src_st.st_mode):
        dst_parts = resolve_parts(dst_root, dst_path, follow_last=False)
        if not dst_parts:
            raise SnapshotPathError(f"cannot copy file {join(src_parts)} over the root directory")
        parent = _ensure_dirs(dst_root, dst_parts[:-1])
        target = parent / dst_parts[-1]
        _clear_for_file(target, join(dst_parts))
        copier.copy(src, src_st, target)
        return
    dst_parts = resolve_parts(dst_root, dst_path)
    parent = _ensure_dirs(dst_root, dst_parts[:-1])
    top = parent / dst_parts[-1] if dst_parts else dst_root
    top_st = _lstat(top)
    fresh = top_st is None or not stat.S_ISDIR(top_st.st_mode)
    if fresh:
        if top_st is not None:
            os.unlink(top)
        copier.copy(src, src_st, top)
    for entry in iter_tree(src, include, exclude, gitignore):
        # Into a directory made just now nothing is in the way: skip the lstat per entry.
        copier.copy(entry.path, entry.st, os.path.join(top, entry.rel), replace=not fresh)
    copier.finish()


#: Flags opening a file to copy: never through a symlink.
READ_SOURCE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


class Copier:
    """Copies entries one by one; directory mtimes are set in `finish`, after their contents."""

    def __init__(
        self,
        *,
        owner: tuple[int, int] | None = None,
        mode: int | None = None,
        hardlinks: bool = True,
        xattrs: bool = True,
    ) -> None:
        self.owner = owner
        self.xattrs = xattrs
        self.mode = None if mode is None else stat.S_IMODE(mode)
        self._links: dict[tuple[int, int], StrPath] | None = {} if hardlinks else None
        self._dirs: list[tuple[StrPath, os.stat_result]] = []

    def copy(
        self,
        src: StrPath,
        st: os.stat_result,
        dst: StrPath,
        *,
        replace: bool = False,
        source_fd: int | None = None,
        link_target: str | None = None,
    ) -> None:
        """Copy one entry (a directory without its contents) to `dst`, whose parent exists.
        `source_fd` (a regular file's, opened by the caller) and `link_target` (a symlink's)
        stand for reading `src` when the caller read it with other rights than it writes.

        An overlay whiteout (char device 0:0, as seen when reading a layer directory itself)
        means "nothing here" and is skipped: copied, it would hide files in a later stack.
        """
        fmt = stat.S_IFMT(st.st_mode)
        if fmt == stat.S_IFCHR and st.st_rdev == 0:
            return
        if replace:
            existing = _lstat(dst)
            if existing is not None:
                if fmt == stat.S_IFDIR and stat.S_ISDIR(existing.st_mode):
                    self.set_meta(src, st, dst)
                    return
                if stat.S_ISDIR(existing.st_mode):
                    shutil.rmtree(dst)
                else:
                    os.unlink(dst)
        if fmt == stat.S_IFDIR:
            os.mkdir(dst, 0o700)
            self.set_meta(src, st, dst)
            return
        if self._links is not None and st.st_nlink > 1 and fmt != stat.S_IFDIR:
            key = (st.st_dev, st.st_ino)
            first = self._links.get(key)
            if first is not None:
                os.link(first, dst, follow_symlinks=False)
                return
            self._links[key] = dst
        if fmt == stat.S_IFREG:
            self._copy_file(src, st, dst, source_fd)
            return
        if fmt == stat.S_IFLNK:
            os.symlink(os.readlink(src) if link_target is None else link_target, dst)
        elif fmt == stat.S_IFSOCK:
            return  # a socket is a live endpoint, meaningless in a copy
        else:
            os.mknod(dst, st.st_mode, st.st_rdev)
        self.set_meta(src, st, dst)

    def _copy_file(
        self, src: StrPath, st: os.stat_result, dst: StrPath, source_fd: int | None = None
    ) -> None:
        """Data and metadata through file descriptors: one path lookup per side."""
        sfd = os.open(src, READ_SOURCE) if source_fd is None else os.dup(source_fd)
        try:
            dfd = os.open(dst, NEW_FILE, 0o600)
            try:
                _send(sfd, dfd)
                uid, gid = self.owner if self.owner is not None else (st.st_uid, st.st_gid)
                os.fchown(dfd, uid, gid)
                if self.xattrs:
                    copy_xattrs(sfd, dfd)
                os.fchmod(dfd, self.mode if self.mode is not None else stat.S_IMODE(st.st_mode))
                os.utime(dfd, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(dfd)
        finally:
            os.close(sfd)

    def set_meta(self, src: StrPath, st: os.stat_result, dst: StrPath) -> None:
        is_link = stat.S_ISLNK(st.st_mode)
        uid, gid = self.owner if self.owner is not None else (st.st_uid, st.st_gid)
        os.chown(dst, uid, gid, follow_symlinks=False)
        if self.xattrs:
            copy_xattrs(src, dst)
        if not is_link:
            # After chown, which clears set-id bits.
            os.chmod(dst, self.mode if self.mode is not None else stat.S_IMODE(st.st_mode))
        if stat.S_ISDIR(st.st_mode):
            self._dirs.append((dst, st))
        else:
            os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)

    def finish(self) -> None:
        """Set directory times, deepest first, now that nothing more is written inside them."""
        for dst, st in reversed(self._dirs):
            os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
        self._dirs.clear()


def _send(sfd: int, dfd: int) -> None:
    """Copy the rest of `sfd` into `dfd` in the kernel; read/write where sendfile can't."""
    try:
        while os.sendfile(dfd, sfd, None, 1 << 30) > 0:
            pass
        return
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOSYS):
            raise
    while chunk := os.read(sfd, 1 << 20):
        view = memoryview(chunk)
        while view:
            view = view[os.write(dfd, view) :]


def copy_xattrs(src: StrPath | int, dst: StrPath | int) -> None:
    """Copy extended attributes (file capabilities, ACLs, user.*), never overlayfs' own.
    Paths are not followed if they are symlinks; open file descriptors work too."""
    follow = isinstance(src, int)
    try:
        names = os.listxattr(src, follow_symlinks=follow)
    except OSError:
        return
    for name in names:
        if name.startswith(OVERLAY_XATTR_PREFIX):
            continue
        try:
            value = os.getxattr(src, name, follow_symlinks=follow)
            os.setxattr(dst, name, value, follow_symlinks=isinstance(dst, int))
        except OSError as exc:
            if exc.errno not in (errno.ENOTSUP, errno.EPERM, errno.ENODATA):
                raise
