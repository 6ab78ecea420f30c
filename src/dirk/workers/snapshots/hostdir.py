"""Host files and directories into layers, keyed by what they hold, not where or when.

The digest covers relative paths, kinds, permission bits, file contents and symlink targets:
never mtimes, owners or the absolute path, so a fresh checkout of the same tree hits the cache.
An import copies exactly what the digest covered (the same walker and filters), owned by root.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from dirk.errors import HostPathError
from dirk.workers.snapshots.fileops import Copier
from dirk.workers.snapshots.layers import LayerStore, Snapshot
from dirk.workers.snapshots.tree import iter_tree

#: A file changed this recently may change again within the timestamp granularity: its content
#: hash is not cached (the "racy git" problem).
RACY_NS = 2_000_000_000
_CACHE_LIMIT = 500_000
#: Files up to this size are read in one call.
_SMALL_FILE = 1 << 20
_cache: dict[tuple[int, int, int, int, int], bytes] = {}
_cache_lock = threading.Lock()


def _host_stat(path: Path) -> os.stat_result:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise HostPathError(
            f"host path {path} does not exist: check the path (a relative path is taken from "
            "the client's working directory)"
        ) from None
    except PermissionError:
        raise HostPathError(f"host path {path} is not readable by the engine") from None
    if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
        raise HostPathError(f"host path {path} is neither a regular file nor a directory")
    return st


def _copied(st: os.stat_result) -> bool:
    """Sockets, fifos and devices on the host are skipped by digests and imports alike."""
    return stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode)


def _content_hash(path: str | Path, st: os.stat_result) -> bytes:
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    cached = _cache.get(key)
    if cached is not None:
        return cached
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except PermissionError:
        raise HostPathError(f"host file {path} is not readable by the engine") from None
    with open(fd, "rb", buffering=0) as f:
        if st.st_size <= _SMALL_FILE:
            digest = hashlib.sha256(f.readall()).digest()
        else:
            digest = hashlib.file_digest(f, "sha256").digest()
    if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > RACY_NS:
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


def digest_host_path(path: Path, include: Sequence[str] = (), exclude: Sequence[str] = ()) -> str:
    """ "sha256:..." of a host file (its name, mode, content) or directory (everything below
    it that passes the filters; the directory's own name and mode are not covered)."""
    st = _host_stat(path)
    h = hashlib.sha256(b"dirk host tree v1\n")
    if stat.S_ISREG(st.st_mode):
        _record(h, path.name, Path(os.path.realpath(path)), st)
    else:
        for entry in iter_tree(path, include, exclude):
            if _copied(entry.st):
                _record(h, entry.rel, entry.path, entry.st)
    return "sha256:" + h.hexdigest()


def import_host_path(
    path: Path, layers: LayerStore, include: Sequence[str] = (), exclude: Sequence[str] = ()
) -> Snapshot:
    """A one-layer snapshot of a host directory's contents (at its root) or of a host file
    (at /<name>). Modes, mtimes and symlinks are kept; everything is owned by root."""
    st = _host_stat(path)
    copier = Copier(owner=(0, 0), xattrs=False)
    with layers.create() as builder:
        os.chmod(builder.path, 0o755)
        if stat.S_ISREG(st.st_mode):
            copier.copy(Path(os.path.realpath(path)), st, builder.path / path.name)
        else:
            for entry in iter_tree(path, include, exclude):
                if _copied(entry.st):
                    copier.copy(entry.path, entry.st, os.path.join(builder.path, entry.rel))
        copier.finish()
    return Snapshot((builder.layer_id,))
