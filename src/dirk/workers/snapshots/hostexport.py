"""Writes to the client's host: files and directories exported from snapshots.

With `hostdir` (the reads) this is the only code touching the host outside the state root.
Every write is atomic per entry: a file is written under a temporary name next to its place
and renamed over it, a new directory is built under a temporary name and renamed into place.
Inside the target nothing is followed: entries are opened relative to their parent's file
descriptor with O_NOFOLLOW, and a symlink found there is replaced as an entry, never written
through, so a link in the target pointing at /etc or elsewhere cannot redirect a write. The
path the user named (up to the target's parent) is taken as it is, symlinks and all.
New entries get the owner of the directory they are exported into where the writer may give
them away (as root); a writer that may not (running with a user's filesystem credentials,
`workers.hostaccess`) leaves them its own. Such a writer reads the source, which is the
engine's, with the engine's credentials, and writes the host with the user's.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import stat
from collections.abc import Sequence
from pathlib import Path

from dirk.errors import HostPathError
from dirk.workers.hostaccess import engine_credentials

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_NAME_MAX = 255
Owner = tuple[int, int]


def _temp_name(name: str) -> str:
    return f".{name[: _NAME_MAX - 24]}.dirk-{secrets.token_hex(6)}"


def _lstat_at(dfd: int, name: str) -> os.stat_result | None:
    try:
        return os.lstat(name, dir_fd=dfd)
    except FileNotFoundError:
        return None


def _open_parent(dest: Path) -> int:
    """The directory that will hold `dest`, created when missing, as an fd."""
    try:
        os.makedirs(dest.parent, exist_ok=True)
        return os.open(dest.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileExistsError:
        raise HostPathError(
            f"cannot export to {dest}: a parent of it is a file, not a directory"
        ) from None
    except NotADirectoryError:
        raise HostPathError(
            f"cannot export to {dest}: a parent of it is a file, not a directory"
        ) from None
    except PermissionError:
        raise HostPathError(f"cannot export to {dest}: its directory is not writable") from None


def _give(fd: int | str, owner: Owner, dfd: int | None = None) -> None:
    """Hand an entry to `owner` (by fd, or by name in `dfd` without following a link)."""
    with contextlib.suppress(PermissionError):
        if isinstance(fd, int):
            os.fchown(fd, *owner)
        else:
            os.chown(fd, *owner, dir_fd=dfd, follow_symlinks=False)


def _remove_at(dfd: int, name: str, st: os.stat_result) -> None:
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=dfd)
    else:
        os.unlink(name, dir_fd=dfd)


def _write_file(src: str, st: os.stat_result, dfd: int, name: str, owner: Owner) -> None:
    with engine_credentials():  # the source is the engine's; the copy is the user's
        sfd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fd = os.open(name, _NEW_FILE, 0o600, dir_fd=dfd)
        try:
            while os.sendfile(fd, sfd, None, 1 << 30) > 0:
                pass
            _give(fd, owner)
            os.fchmod(fd, stat.S_IMODE(st.st_mode))
            os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(fd)
    finally:
        os.close(sfd)


def _write_entry(src: str, st: os.stat_result, dfd: int, name: str, owner: Owner) -> bool:
    """Create `name` in `dfd` as a copy of `src` (a directory with all it holds); False when
    the source is of a kind that is not exported (devices, fifos, sockets, whiteouts)."""
    if stat.S_ISREG(st.st_mode):
        _write_file(src, st, dfd, name, owner)
    elif stat.S_ISLNK(st.st_mode):
        with engine_credentials():
            target = os.readlink(src)
        os.symlink(target, name, dir_fd=dfd)
        _give(name, owner, dfd)
        os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dfd, follow_symlinks=False)
    elif stat.S_ISDIR(st.st_mode):
        os.mkdir(name, 0o700, dir_fd=dfd)
        cfd = os.open(name, _DIR_FLAGS, dir_fd=dfd)
        try:
            _fill(src, cfd, owner, merge=False)
            _set_dir_meta(cfd, st, owner)
        finally:
            os.close(cfd)
    else:
        return False
    return True


def _set_dir_meta(fd: int, st: os.stat_result, owner: Owner) -> None:
    _give(fd, owner)
    os.fchmod(fd, stat.S_IMODE(st.st_mode))
    os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))


def _place(src: str, st: os.stat_result, dfd: int, name: str, owner: Owner) -> None:
    """Write `src` as `name` in `dfd`: under a temporary name first, then renamed over
    whatever is there (a symlink there is replaced, not followed)."""
    tmp = _temp_name(name)
    try:
        if not _write_entry(src, st, dfd, tmp, owner):
            return
        existing = _lstat_at(dfd, name)
        if existing is not None and (stat.S_ISDIR(existing.st_mode) or stat.S_ISDIR(st.st_mode)):
            _remove_at(dfd, name, existing)  # rename cannot replace a directory by another kind
        os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    except BaseException:
        leftover = _lstat_at(dfd, tmp)
        if leftover is not None:
            _remove_at(dfd, tmp, leftover)
        raise


def _fill(src_dir: str, dfd: int, owner: Owner, *, merge: bool) -> None:
    """Copy the entries of `src_dir` into the directory `dfd`; with `merge`, entries already
    there and not in the source are kept, and directories on both sides are merged."""
    with engine_credentials(), os.scandir(src_dir) as it:
        entries = sorted(((de, de.stat(follow_symlinks=False)) for de in it), key=_by_name)
    for de, st in entries:
        if not merge:
            _write_entry(de.path, st, dfd, de.name, owner)
            continue
        existing = _lstat_at(dfd, de.name)
        if existing is not None and stat.S_ISDIR(st.st_mode) and stat.S_ISDIR(existing.st_mode):
            cfd = os.open(de.name, _DIR_FLAGS, dir_fd=dfd)
            try:
                _fill(de.path, cfd, owner, merge=True)
                _set_dir_meta(cfd, st, (existing.st_uid, existing.st_gid))
            finally:
                os.close(cfd)
            continue
        _place(de.path, st, dfd, de.name, owner)


def _by_name(entry: tuple[os.DirEntry[str], os.stat_result]) -> str:
    return entry[0].name


def _owner_of(fd: int) -> Owner:
    st = os.fstat(fd)
    return st.st_uid, st.st_gid


def export_file(source: Path, dest: Path, *, allow_parent_dir: bool = False) -> Path:
    """Write the regular file `source` at `dest` (into it when `allow_parent_dir` and `dest`
    is a directory); returns the path written."""
    if allow_parent_dir and dest.is_dir():
        dest = dest / source.name
    pfd = _open_parent(dest)
    try:
        existing = _lstat_at(pfd, dest.name)
        if existing is not None and stat.S_ISDIR(existing.st_mode):
            raise HostPathError(
                f"cannot export a file to {dest}: it is a directory (pass "
                "allowParentDirPath: true to write the file into it)"
            )
        with engine_credentials():
            st = os.lstat(source)
        try:
            _place(str(source), st, pfd, dest.name, _owner_of(pfd))
        except PermissionError:
            raise HostPathError(f"cannot export to {dest}: permission denied") from None
    finally:
        os.close(pfd)
    return dest


def export_directory(source: Path, dest: Path, *, wipe: bool = False) -> Path:
    """Write the contents of the directory `source` to `dest`; merged into an existing
    directory entry by entry, or (`wipe`) replacing it whole. Returns the path written."""
    pfd = _open_parent(dest)
    try:
        owner = _owner_of(pfd)
        with engine_credentials():
            st = os.lstat(source)
        existing = _lstat_at(pfd, dest.name)
        try:
            if existing is not None and stat.S_ISDIR(existing.st_mode) and not wipe:
                dfd = os.open(dest.name, _DIR_FLAGS, dir_fd=pfd)
                try:
                    _fill(str(source), dfd, owner, merge=True)
                finally:
                    os.close(dfd)
            else:
                _replace_dir(source, st, pfd, dest.name, owner, existing)
        except PermissionError:
            raise HostPathError(f"cannot export to {dest}: permission denied") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise HostPathError(
                    f"cannot export to {dest}: a symlink appeared inside it during the export"
                ) from None
            raise
    finally:
        os.close(pfd)
    return dest


def _replace_dir(
    source: Path,
    st: os.stat_result,
    pfd: int,
    name: str,
    owner: Owner,
    existing: os.stat_result | None,
) -> None:
    """Build the new directory under a temporary name, then swap it in."""
    if existing is None or not stat.S_ISDIR(existing.st_mode):
        _place(str(source), st, pfd, name, owner)
        return
    tmp = _temp_name(name)
    trash = _temp_name(name)
    try:
        _write_entry(str(source), st, pfd, tmp, owner)
        os.rename(name, trash, src_dir_fd=pfd, dst_dir_fd=pfd)
        os.rename(tmp, name, src_dir_fd=pfd, dst_dir_fd=pfd)
    except BaseException:
        leftover = _lstat_at(pfd, tmp)
        if leftover is not None:
            _remove_at(pfd, tmp, leftover)
        if _lstat_at(pfd, name) is None and _lstat_at(pfd, trash) is not None:
            os.rename(trash, name, src_dir_fd=pfd, dst_dir_fd=pfd)
        raise
    shutil.rmtree(trash, dir_fd=pfd)


def remove_entries(dest: Path, paths: Sequence[str]) -> None:
    """Remove `paths` (relative, "/"-separated, a trailing "/" for directories) below the host
    directory `dest`, as a Changeset's export does for what it removed. Nothing is followed:
    a path that leads through a symlink or a non-directory, or is missing, is left alone."""
    try:
        root = os.open(dest, _DIR_FLAGS)
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return  # dest itself is a symlink: what it points at is not ours to change
        raise
    try:
        for rel in paths:
            parts = [p for p in rel.strip("/").split("/") if p not in ("", ".")]
            if not parts or ".." in parts:
                continue
            _remove_below(root, parts, dest)
    finally:
        os.close(root)


def _remove_below(root: int, parts: list[str], dest: Path) -> None:
    fds: list[int] = []
    try:
        dfd = root
        for name in parts[:-1]:
            try:
                dfd = os.open(name, _DIR_FLAGS, dir_fd=dfd)
            except OSError:
                return  # missing, a file, or a symlink (ELOOP): nothing of ours below
            fds.append(dfd)
        st = _lstat_at(dfd, parts[-1])
        if st is not None:
            try:
                _remove_at(dfd, parts[-1], st)
            except PermissionError:
                raise HostPathError(
                    f"cannot remove {'/'.join(parts)} below {dest}: permission denied"
                ) from None
    finally:
        for fd in fds:
            os.close(fd)
