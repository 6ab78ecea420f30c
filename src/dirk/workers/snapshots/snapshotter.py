"""Snapshots as overlayfs mounts: a step mounts its input read-write and commits what it wrote.

Everything under `run/m/` belongs to the snapshotter: `run/m/<id>/{u,w,m}` are one mount's
upper, work and merged dirs, `run/m/e` is the permanent empty lower of an empty snapshot,
`run/m/t` holds released mount dirs until the reaper thread deletes them.
Reads of single files walk the layer directories instead of mounting (see `layerview`).
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
import shutil
import stat
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import attrs

from dirk.errors import SnapshotError, SnapshotPathError
from dirk.state.layout import StateLayout
from dirk.workers.snapshots import overlay
from dirk.workers.snapshots.flatten import flatten_into
from dirk.workers.snapshots.layers import LayerStore, Snapshot, new_layer_id
from dirk.workers.snapshots.layerview import Entry, LayerView, is_opaque
from dirk.workers.snapshots.paths import clean_path, join
from dirk.workers.snapshots.reaper import Reaper, remove_tree
from dirk.workers.syscalls import mounts_under

Kind = Literal["file", "dir", "symlink", "other"]

#: Deep overlay stacks make every miss in a container (PATH lookups, imports) cost a lookup per
#: layer; past this many lowers a mount uses a flattened base even if the options would fit.
DEFAULT_MAX_LOWERS = 128
#: Length of the ids `new_layer_id` makes; used to size stacks before the ids are known.
_ID_LEN = len(new_layer_id())


@attrs.frozen
class ActiveMount:
    """A read-write overlay of `snapshot`; `merged` is the mounted root."""

    snapshot: Snapshot
    merged: Path
    upper: Path
    work: Path


@attrs.frozen
class FileInfo:
    path: str
    kind: Kind
    size: int
    mode: int
    uid: int
    gid: int
    target: str  # a symlink's target, "" otherwise


def _kind(mode: int) -> Kind:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


class Snapshotter:
    def __init__(
        self,
        layout: StateLayout,
        layers: LayerStore,
        *,
        max_lowers: int = DEFAULT_MAX_LOWERS,
        volatile: bool = True,
    ) -> None:
        """`volatile` skips overlayfs' sync of the whole upper filesystem at each unmount."""
        self._layers = layers
        self._root = layout.run / "m"
        self._empty = self._root / "e"
        self._reaper = Reaper(self._root / "t")
        self._volatile = volatile
        self._flatten_lock = threading.RLock()
        self._ensure_dirs()
        self.max_lowers = max(2, min(max_lowers, self._lowers_that_fit()))

    def _ensure_dirs(self) -> None:
        self._root.mkdir(parents=True, exist_ok=True)
        self._empty.mkdir(exist_ok=True)
        os.chmod(self._empty, 0o755)
        self._reaper.trash.mkdir(exist_ok=True)

    def _lowers_that_fit(self) -> int:
        """How many lower layers fit in one writable mount's option page."""
        mount_dir = self._root / ("x" * 8)
        layer = self._layers.layout.layers / ("x" * _ID_LEN)

        def size(count: int) -> int:
            data = overlay.options(
                [layer] * count, mount_dir / "u", mount_dir / "w", volatile=self._volatile
            )
            return len(data.encode())

        per_layer = size(2) - size(1)
        room = overlay.MOUNT_DATA_LIMIT - size(1)
        if room < per_layer:
            raise SnapshotError(
                f"the state directory path {self._layers.layout.root} is too long for overlayfs "
                "mount options: use a shorter state directory (DIRK_STATE_DIR)"
            )
        return min(overlay.KERNEL_MAX_LOWERS, 1 + room // per_layer)

    # --- mounts ---------------------------------------------------------------------------

    def _new_mount_dir(self) -> Path:
        while True:
            path = self._root / secrets.token_hex(4)
            try:
                path.mkdir()
                return path
            except FileExistsError:
                continue

    def _lower_dirs(self, snapshot: Snapshot) -> list[Path]:
        """Lower dirs for mounting `snapshot`, top first, flattening a too-deep base."""
        if not snapshot.layers:
            return [self._empty]
        ids = self._stack(_topmost_only(snapshot.layers))
        return [self._layers.path(i) for i in reversed(ids)]

    def _stack(self, ids: tuple[str, ...]) -> list[str]:
        """At most `max_lowers` ids (bottom first) showing the same tree as `ids`.

        The base is always a prefix whose length is a multiple of `max_lowers - 1`, so a chain
        of steps growing one layer at a time reuses each flattened base for that many steps.
        """
        limit = self.max_lowers
        if len(ids) <= limit:
            return list(ids)
        chunk = limit - 1
        need = len(ids) - limit + 1
        cut = -(-need // chunk) * chunk
        return [self._flattened(ids[:cut]), *ids[cut:]]

    def _flattened(self, ids: tuple[str, ...]) -> str:
        """The cached layer holding the merged tree of `ids`, made once."""
        source = "flatten:" + hashlib.sha256(",".join(ids).encode()).hexdigest()
        with self._flatten_lock:
            existing = self._layers.by_source(source)
            if existing is not None:
                return existing
            stack = self._stack(ids)
            view = LayerView([self._layers.path(i) for i in reversed(stack)])
            with self._layers.create(source) as builder:
                flatten_into(view, builder.path)
            return builder.layer_id

    def mount_rw(self, snapshot: Snapshot) -> ActiveMount:
        """A fresh upper dir over `snapshot`, mounted; commit or release it exactly once."""
        lowers = self._lower_dirs(snapshot)
        base = self._new_mount_dir()
        active = ActiveMount(snapshot, base / "m", base / "u", base / "w")
        try:
            for path in (active.merged, active.upper, active.work):
                path.mkdir()
            os.chmod(active.upper, 0o755)  # the root directory of the tree, whatever the umask
            data = overlay.options(lowers, active.upper, active.work, volatile=self._volatile)
            overlay.mount_overlay(active.merged, data)
        except BaseException:
            shutil.rmtree(base, ignore_errors=True)
            raise
        return active

    def commit(self, active: ActiveMount, stubs: Iterable[str] = ()) -> Snapshot:
        """Unmount and turn the upper dir into a new layer (a rename); nothing written = same
        snapshot. `stubs` are mount points the runtime made; those new and empty are dropped."""
        overlay.unmount(active.merged)
        if not active.upper.is_dir():
            raise SnapshotError(
                f"mount {active.merged.parent.name} was already committed or released"
            )
        if stubs:
            self._drop_stubs(active, stubs)
        if _is_empty_dir(active.upper):
            self.release(active)
            return active.snapshot
        layer_id = new_layer_id()
        self._layers.adopt(active.upper, layer_id)
        self._reaper.discard(active.merged.parent)
        return active.snapshot.on_top(layer_id)

    def release(self, active: ActiveMount) -> None:
        """Unmount and discard the mount's upper and work dirs. Safe to call more than once."""
        overlay.unmount(active.merged)
        self._reaper.discard(active.merged.parent)

    def _drop_stubs(self, active: ActiveMount, stubs: Iterable[str]) -> None:
        lower = self._view(active.snapshot)
        for stub in stubs:
            parts = clean_path(stub)
            while parts:
                if not _drop_stub(active.upper, parts, lower):
                    break
                parts = parts[:-1]

    @contextmanager
    def mount_ro(self, snapshot: Snapshot) -> Iterator[Path]:
        """A read-only view of `snapshot`, valid inside the block. Never write through it: for
        zero or one layer it is the empty dir or the layer itself, not a mount (a lone layer
        unpacked with whiteouts shows them as char devices 0:0; `fileops` skips those)."""
        if not snapshot.layers:
            yield self._empty
            return
        lowers = self._lower_dirs(snapshot)
        if len(lowers) == 1:
            yield lowers[0]
            return
        base = self._new_mount_dir()
        merged = base / "m"
        try:
            merged.mkdir()
            overlay.mount_overlay(merged, overlay.options(lowers), readonly=True)
            yield merged
        finally:
            overlay.unmount(merged)
            self._reaper.discard(base)

    def wait_reaped(self) -> None:
        """Block until released mount dirs are deleted from disk (tests, engine shutdown)."""
        self._reaper.wait()

    def layers_above(self, base: Snapshot, top: Snapshot) -> list[Path] | None:
        """The layer directories (bottom first) `top` adds when it is `base` with layers on
        top, as after a step on `base`; None when it is not. Only paths in them can differ."""
        count = len(base.layers)
        if top.layers[:count] != base.layers:
            return None
        return [self._layers.path(i) for i in top.layers[count:]]

    # --- reads without mounting -----------------------------------------------------------

    def _view(self, snapshot: Snapshot) -> LayerView:
        """The layers of `snapshot` to read, top first; a deep stack reads its flattened base
        (the one mounts use) so a lookup costs at most `max_lowers` stats per component."""
        if not snapshot.layers:
            return LayerView(())
        layers_dir = str(self._layers.layout.layers)
        ids = self._stack(_topmost_only(snapshot.layers))
        return LayerView([f"{layers_dir}/{i}" for i in reversed(ids)])

    def _entry(self, snapshot: Snapshot, path: str, follow_last: bool) -> tuple[str, Entry | None]:
        parts, entry = self._view(snapshot).resolve(clean_path(path), follow_last=follow_last)
        return join(parts), entry

    def read_file(self, snapshot: Snapshot, path: str, limit: int | None = None) -> bytes:
        """The contents of the file at `path` (symlinks followed), at most `limit` bytes."""
        shown, entry = self._entry(snapshot, path, True)
        if entry is None:
            raise SnapshotPathError(
                f"{path}: no such file or directory (cannot read it: {shown} does not exist)"
            )
        if not stat.S_ISREG(entry.st.st_mode):
            raise SnapshotPathError(f"cannot read {path}: it is a {_kind(entry.st.st_mode)}")
        with open(entry.path, "rb") as f:
            return f.read() if limit is None else f.read(limit)

    def file_path(self, snapshot: Snapshot, path: str) -> Path:
        """Where the regular file at `path` (symlinks followed) lies in its layer: to read,
        never to write (layers are immutable)."""
        shown, entry = self._entry(snapshot, path, True)
        if entry is None:
            raise SnapshotPathError(f"cannot read {path}: no such file ({shown} does not exist)")
        if not stat.S_ISREG(entry.st.st_mode):
            raise SnapshotPathError(f"cannot read {path}: it is a {_kind(entry.st.st_mode)}")
        return Path(entry.path)

    def list_dir(self, snapshot: Snapshot, path: str) -> list[str]:
        """The sorted names in directory `path` (symlinks followed)."""
        entry = self._directory(snapshot, path)
        return [] if entry is None else self._view(snapshot).names(entry)

    def list_entries(self, snapshot: Snapshot, path: str) -> list[tuple[str, Kind]]:
        """The sorted names in directory `path` with the kind of each (symlinks not followed),
        in one pass over the layers."""
        entry = self._directory(snapshot, path)
        if entry is None:
            return []
        children = self._view(snapshot).children(entry)
        return sorted((name, _kind(child.st.st_mode)) for name, child in children)

    def _directory(self, snapshot: Snapshot, path: str) -> Entry | None:
        """The directory entry at `path`; None for the root of an empty snapshot."""
        if not snapshot.layers:
            if clean_path(path):
                raise SnapshotPathError(
                    f"{path}: no such file or directory (cannot list it: the directory is empty)"
                )
            return None
        shown, entry = self._entry(snapshot, path, True)
        if entry is None:
            raise SnapshotPathError(
                f"{path}: no such file or directory (cannot list it: {shown} does not exist)"
            )
        if not entry.is_dir:
            raise SnapshotPathError(f"cannot list {path}: it is a {_kind(entry.st.st_mode)}")
        return entry

    def stat(self, snapshot: Snapshot, path: str, follow: bool = False) -> FileInfo | None:
        """What is at `path` (a symlink there is described, unless `follow`); None if nothing."""
        shown = join(clean_path(path))
        if not snapshot.layers:
            if shown != "/":
                return None
            return FileInfo("/", "dir", 4096, 0o755, 0, 0, "")
        _, entry = self._entry(snapshot, path, follow)
        if entry is None:
            return None
        st = entry.st
        kind = _kind(st.st_mode)
        target = os.readlink(entry.path) if kind == "symlink" else ""
        return FileInfo(
            shown, kind, st.st_size, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, target
        )

    # --- crash recovery -------------------------------------------------------------------

    def cleanup_stale(self) -> None:
        """Unmount and delete whatever a previous engine left under `run/m`. Call at start,
        before any mount of this engine exists."""
        for point in mounts_under(self._root):
            overlay.detach(point)
        left = mounts_under(self._root)
        if left:
            raise SnapshotError(
                f"could not unmount {', '.join(map(str, left))}: unmount them by hand "
                "(umount -l) and restart the engine"
            )
        self._reaper.wait()
        for entry in os.scandir(self._root):
            remove_tree(Path(entry.path))
        self._ensure_dirs()


def _topmost_only(ids: tuple[str, ...]) -> tuple[str, ...]:
    """Drop lower repeats of a layer (overlayfs refuses a stack holding one twice). A repeat is
    redundant: the topmost copy re-applies every entry and whiteout of the lower one."""
    if len(set(ids)) == len(ids):
        return ids
    kept: dict[str, None] = {}
    for layer_id in reversed(ids):
        kept.setdefault(layer_id, None)
    return tuple(reversed(kept))


def _is_empty_dir(path: Path) -> bool:
    with os.scandir(path) as it:
        return next(it, None) is None


def _drop_stub(upper: Path, parts: tuple[str, ...], lower: LayerView) -> bool:
    """Remove the upper entry at `parts` if a runtime mount point made it: empty, not
    whiteout/opaque, and absent from the lower snapshot or an unchanged empty copy-up of a
    lower directory. Returns whether it was removed."""
    path = upper
    for comp in parts[:-1]:
        path = path / comp
        try:
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                return False  # never follow a symlink the container made
        except FileNotFoundError:
            return False
    path = path / parts[-1]
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    below = lower.lookup(parts)
    if stat.S_ISDIR(st.st_mode):
        if is_opaque(path) or not _is_empty_dir(path):
            return False
        if below is not None and not (
            below.is_dir
            and stat.S_IMODE(below.st.st_mode) == stat.S_IMODE(st.st_mode)
            and (below.st.st_uid, below.st.st_gid) == (st.st_uid, st.st_gid)
        ):
            return False
        try:
            os.rmdir(path)
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                return False
            raise
        return True
    if stat.S_ISREG(st.st_mode) and st.st_size == 0 and below is None:
        os.unlink(path)
        return True
    return False
