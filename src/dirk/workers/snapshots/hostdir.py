"""Reads of the client's host: files and directories into layers, keyed by what they hold.

This module and `hostexport` (the writes) are the only code that touches the host's filesystem
outside the state root; each is a handful of functions taking paths and returning data or
snapshots, so running them elsewhere (as the client's uid, or over the client's connection for
a remote engine) changes these two modules only.

The digest covers relative paths, kinds, permission bits, file contents and symlink targets:
never mtimes, owners or the absolute path, so a fresh checkout of the same tree hits the cache.
An import copies exactly what the digest covered (the same walker and filters), owned by root.
Two caches keep an unchanged re-read cheap: content hashes by (inode, size, times), and whole
tree digests by the stats of everything the walk looked at, so an unchanged tree costs one
lstat per entry and no directory listing or file read.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import attrs

from dirk.errors import HostPathError
from dirk.workers.hostaccess import current_uid, engine_credentials, owner_credentials
from dirk.workers.snapshots.fileops import READ_SOURCE, Copier
from dirk.workers.snapshots.layers import LayerStore, Snapshot
from dirk.workers.snapshots.tree import TreeEntry, Watch, iter_tree

#: A file changed this recently may change again within the timestamp granularity: its content
#: hash is not cached (the "racy git" problem).
RACY_NS = 2_000_000_000
_CACHE_LIMIT = 500_000
#: How many entries the remembered tree digests may watch in all (~200 bytes each).
_TREE_MEMO_LIMIT = 300_000
#: Files up to this size are read in one call.
_SMALL_FILE = 1 << 20
_cache: dict[tuple[int, int, int, int, int], bytes] = {}
_cache_lock = threading.Lock()

HostKind = Literal["file", "directory", "missing", "other"]
Signature = tuple[int, int, int, int, int, int]
#: (uid whose rights read it, real path, include, exclude, gitignore)
_TreeKey = tuple[int, str, tuple[str, ...], tuple[str, ...], bool]


@attrs.frozen
class _TreeMemo:
    digest: str
    watched: tuple[tuple[str, Signature], ...]


_trees: dict[_TreeKey, _TreeMemo] = {}
_trees_size = 0


def missing_message(path: Path | str) -> str:
    """Dagger's words for a missing path, then dirk's hint."""
    return (
        f"{path}: no such file or directory (a relative path is taken from the session's "
        "working directory): check the path"
    )


def denied_message(path: Path | str) -> str:
    """What a session reads when its owner may not read `path`: host files are read with the
    rights of the user who opened the session."""
    return (
        f"{path}: permission denied (host files are read with the rights of the user who "
        f"opened the session, uid {current_uid()}): make it readable to that user, or run the "
        "pipeline as a user who may read it"
    )


def host_kind(path: Path) -> HostKind:
    """What `path` is, symlinks followed."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "missing"
    except NotADirectoryError:
        return "missing"
    except PermissionError:
        raise HostPathError(denied_message(path)) from None
    if stat.S_ISDIR(st.st_mode):
        return "directory"
    return "file" if stat.S_ISREG(st.st_mode) else "other"


def find_up(start: Path, name: str) -> Path | None:
    """The nearest `start/name`, `start/../name`, ... up to "/" that exists, or None."""
    if not name or "/" in name or name in (".", ".."):
        raise HostPathError(f"findUp needs a plain file name, not {name!r}")
    current = Path(os.path.normpath(start))
    while True:
        candidate = current / name
        if os.path.lexists(candidate):
            return candidate
        if current.parent == current:
            return None
        current = current.parent


def _host_stat(path: Path) -> os.stat_result:
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise HostPathError(missing_message(path)) from None
    except PermissionError:
        raise HostPathError(denied_message(path)) from None
    if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
        raise HostPathError(f"host path {path} is neither a regular file nor a directory")
    return st


def _copied(st: os.stat_result) -> bool:
    """Sockets, fifos and devices on the host are skipped by digests and imports alike."""
    return stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode)


def _signature(st: os.stat_result) -> Signature:
    return (st.st_mode, st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _racy(st: os.stat_result, now: int) -> bool:
    return now - max(st.st_mtime_ns, st.st_ctime_ns) <= RACY_NS


def _content_hash(path: str | Path, st: os.stat_result) -> bytes:
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    cached = _cache.get(key)
    if cached is not None:
        return cached
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except PermissionError:
        raise HostPathError(denied_message(path)) from None
    with open(fd, "rb", buffering=0) as f:
        if st.st_size <= _SMALL_FILE:
            digest = hashlib.sha256(f.readall()).digest()
        else:
            digest = hashlib.file_digest(f, "sha256").digest()
    if not _racy(st, time.time_ns()):
        with _cache_lock:
            if len(_cache) >= _CACHE_LIMIT:
                _cache.clear()
            _cache[key] = digest
    return digest


def _record(h: hashlib._Hash, rel: str, path: str | Path, st: os.stat_result) -> None:
    mode = st.st_mode
    if stat.S_ISREG(mode):
        kind, payload = b"f", _content_hash(path, st)
    elif stat.S_ISDIR(mode):
        kind, payload = b"d", b""
    else:
        kind, payload = b"l", os.fsencode(os.readlink(path))
    perm = b"%o" % stat.S_IMODE(mode) if kind != b"l" else b""
    h.update(b"%s\0%s\0%s\0%d\0%s\n" % (kind, os.fsencode(rel), perm, len(payload), payload))


def _unchanged(memo: _TreeMemo) -> bool:
    try:
        return all(_signature(os.lstat(p)) == sig for p, sig in memo.watched)
    except OSError:
        return False


def _remember(key: _TreeKey, memo: _TreeMemo) -> None:
    global _trees_size
    with _cache_lock:
        old = _trees.pop(key, None)
        if old is not None:
            _trees_size -= len(old.watched)
        if _trees_size + len(memo.watched) > _TREE_MEMO_LIMIT:
            _trees.clear()
            _trees_size = 0
        _trees[key] = memo
        _trees_size += len(memo.watched)


def digest_host_path(
    path: Path,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    gitignore: bool = False,
) -> str:
    """ "sha256:..." of a host file (its name, mode, content) or directory (everything below
    it that passes the filters; the directory's own name and mode are not covered)."""
    st = _host_stat(path)
    h = hashlib.sha256(b"dirk host tree v1\n")
    if stat.S_ISREG(st.st_mode):
        _record(h, path.name, Path(os.path.realpath(path)), st)
        return "sha256:" + h.hexdigest()
    real = os.path.realpath(path)
    key: _TreeKey = (current_uid(), real, tuple(include), tuple(exclude), gitignore)
    memo = _trees.get(key)
    if memo is not None and _unchanged(memo):
        return memo.digest
    watch: Watch = []
    for entry in iter_tree(real, include, exclude, gitignore, watch):
        if _copied(entry.st):
            _record(h, entry.rel, entry.path, entry.st)
            if not entry.is_dir:  # directories are in `watch` already
                watch.append((entry.path, entry.st))
    digest = "sha256:" + h.hexdigest()
    now = time.time_ns()
    if not any(_racy(wst, now) for _, wst in watch):
        _remember(key, _TreeMemo(digest, tuple((p, _signature(s)) for p, s in watch)))
    return digest


def import_host_path(
    path: Path,
    layers: LayerStore,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    gitignore: bool = False,
) -> Snapshot:
    """A one-layer snapshot of a host directory's contents (at its root) or of a host file
    (at /<name>). Modes, mtimes and symlinks are kept; everything is owned by root.

    In a session owner's host-access thread the host is read with the owner's rights and the
    layer written with the engine's (`workers.hostaccess`)."""
    st = _host_stat(path)
    real = os.path.realpath(path)
    copier = Copier(owner=(0, 0), xattrs=False)
    with engine_credentials(), layers.create() as builder:
        os.chmod(builder.path, 0o755)
        if stat.S_ISREG(st.st_mode):
            _copy_from_host(copier, TreeEntry(path.name, real, st), builder.path)
        else:
            walk = iter_tree(real, include, exclude, gitignore)
            while True:
                with owner_credentials():
                    entry = next(walk, None)
                if entry is None:
                    break
                if _copied(entry.st):
                    _copy_from_host(copier, entry, builder.path)
        copier.finish()
    return Snapshot((builder.layer_id,))


def _copy_from_host(copier: Copier, entry: TreeEntry, layer: Path) -> None:
    """One entry into the layer: its data read with the owner's rights, written with ours."""
    source_fd = None
    link = None
    with owner_credentials():
        if stat.S_ISREG(entry.st.st_mode):
            source_fd = os.open(entry.path, READ_SOURCE)
        elif stat.S_ISLNK(entry.st.st_mode):
            link = os.readlink(entry.path)
    try:
        dest = os.path.join(layer, entry.rel)
        copier.copy(entry.path, entry.st, dest, source_fd=source_fd, link_target=link)
    finally:
        if source_fd is not None:
            os.close(source_fd)
