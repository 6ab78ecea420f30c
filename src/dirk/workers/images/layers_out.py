"""Snapshot layers out as image layer blobs: a layer directory (overlay format) -> OCI layer tar,
compressed, in the blob store. Blocking: run it in a thread.

Overlay whiteouts become OCI ones again (a 0:0 character device NAME -> an empty `.wh.NAME`,
the opaque xattr -> `DIR/.wh..wh..opq`). The tar is deterministic: entries sorted by name,
PAX headers with numeric owners only, whole-second mtimes (the files' own), no atime/ctime, so
the same layer always gives the same diff_id. Each (layer, compression) blob is made once and
remembered in `layer_blobs`; a pulled layer is re-encoded from its original blob (same tar,
same diff_id) rather than from its directory.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import shutil
import stat
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Literal

import attrs
import zstandard

from dirk.errors import ImageError
from dirk.state.blobs import BlobStore, BlobWriter
from dirk.state.db import Database
from dirk.workers.images.decompress import CHUNK, open_decompressed
from dirk.workers.images.unpack import OPAQUE_MARKER, WHITEOUT_PREFIX
from dirk.workers.snapshots.layers import LayerStore
from dirk.workers.snapshots.layerview import OVERLAY_XATTR_PREFIX, is_opaque, is_whiteout

#: How a layer blob is compressed, in the words of `decompress.sniff`.
Compression = Literal["gzip", "zstd", "none"]
COMPRESSIONS: tuple[Compression, ...] = ("gzip", "zstd", "none")
_KINDS: dict[str, Compression] = {c: c for c in COMPRESSIONS}
ZSTD_LEVEL = 3


@attrs.frozen
class LayerBlob:
    """One layer as a blob: compressed digest and size, and the digest of the plain tar."""

    digest: str
    diff_id: str
    size: int
    compression: Compression


class LayerBlobs:
    """Layer blobs made once per (layer, compression), found again through the database."""

    def __init__(self, blobs: BlobStore, layers: LayerStore, db: Database) -> None:
        self.blobs = blobs
        self.layers = layers
        self.db = db
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()

    def known(self, layer_id: str) -> list[LayerBlob]:
        """The blobs of `layer_id` there are (rows whose blob vanished are dropped)."""
        found = []
        for compression, digest, diff_id, size in self.db.layer_blobs(layer_id):
            kind = _KINDS.get(compression)
            if kind is None:
                continue
            if not self.blobs.has(digest):
                self.db.remove_layer_blob(layer_id, compression)
                continue
            found.append(LayerBlob(digest, diff_id, size, kind))
        return found

    def remember(self, layer_id: str, blob: LayerBlob) -> None:
        self.db.add_layer_blob(layer_id, blob.compression, blob.digest, blob.diff_id, blob.size)

    def get(self, layer_id: str, compression: Compression | None) -> LayerBlob:
        """The layer as a blob: of `compression`, or (None) of any compression already made,
        else gzip. Made at most once, even by concurrent callers."""
        with self._guard:
            lock = self._locks.setdefault((layer_id, str(compression)), threading.Lock())
        with lock:
            known = self.known(layer_id)
            if compression is None:
                if known:
                    return _preferred(known)
                compression = "gzip"
            for blob in known:
                if blob.compression == compression:
                    return blob
            if known:
                source = _preferred(known)
                blob = self._recompress(source, compression)
                if blob.diff_id != source.diff_id:
                    raise ImageError(
                        f"layer {layer_id}: re-encoding blob {source.digest} gave a tar of digest "
                        f"{blob.diff_id}, not {source.diff_id}; the blob store is corrupt"
                    )
            else:
                blob = self._from_directory(layer_id, compression)
            self.remember(layer_id, blob)
            return blob

    def _from_directory(self, layer_id: str, compression: Compression) -> LayerBlob:
        with self.blobs.writer() as writer, _Encoder(writer, compression) as encoder:
            write_layer_tar(self.layers.path(layer_id), encoder)
            encoder.close()
            digest = writer.commit()
        return LayerBlob(digest, encoder.diff_id, writer.size, compression)

    def _recompress(self, source: LayerBlob, compression: Compression) -> LayerBlob:
        what = f"layer blob {source.digest}"
        with (
            open_decompressed(self.blobs.path(source.digest), what) as read,
            self.blobs.writer() as writer,
            _Encoder(writer, compression) as encoder,
        ):
            while chunk := read():
                encoder.write(chunk)
            encoder.close()
            digest = writer.commit()
        return LayerBlob(digest, encoder.diff_id, writer.size, compression)


def _preferred(blobs: list[LayerBlob]) -> LayerBlob:
    """Of the blobs a layer has, the one to reuse when no compression is asked for."""
    order = {"gzip": 0, "zstd": 1, "none": 2}
    return min(blobs, key=lambda b: order[b.compression])


# --- compression ---------------------------------------------------------------------------------


class _Encoder:
    """A write-only stream that hashes what it gets (the diff_id) and writes it, compressed,
    to a blob writer. gzip goes through `igzip -1` (or pigz) on another core when installed."""

    def __init__(self, writer: BlobWriter, compression: Compression) -> None:
        self._writer = writer
        self._hash = hashlib.sha256()
        self._written = 0
        self._closed = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._pump: threading.Thread | None = None
        self._pump_error: BaseException | None = None
        self._sink: BinaryIO | None = None
        self._zstd: zstandard.ZstdCompressionWriter | None = None
        self._gzip: gzip.GzipFile | None = None
        if compression == "gzip":
            cmd = gzip_command()
            if cmd is not None:
                self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
                self._pump = threading.Thread(target=self._drain, daemon=True)
                self._pump.start()
            else:
                self._gzip = gzip.GzipFile(fileobj=_WriterIO(writer), mode="wb", mtime=0)
        elif compression == "zstd":
            cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=-1)
            self._zstd = cctx.stream_writer(_WriterIO(writer), closefd=False)  # type: ignore[arg-type]

    @property
    def diff_id(self) -> str:
        return "sha256:" + self._hash.hexdigest()

    def _drain(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        try:
            while chunk := self._proc.stdout.read(CHUNK):
                self._writer.write(chunk)
        except BaseException as exc:  # reported by close()
            self._pump_error = exc

    def tell(self) -> int:
        return self._written

    def write(self, data: bytes | memoryview) -> int:
        self._hash.update(data)
        self._written += len(data)
        if self._proc is not None:
            assert self._proc.stdin is not None
            self._proc.stdin.write(data)
        elif self._zstd is not None:
            self._zstd.write(data)
        elif self._gzip is not None:
            self._gzip.write(data)
        else:
            self._writer.write(bytes(data))
        return len(data)

    def close(self) -> None:
        """Flush everything into the blob writer (which the caller then commits)."""
        if self._closed:
            return
        self._closed = True
        if self._proc is not None:
            assert self._proc.stdin is not None and self._pump is not None
            self._proc.stdin.close()
            self._pump.join()
            code = self._proc.wait()
            if code != 0 or self._pump_error is not None:
                raise ImageError(f"compressing a layer failed ({self._pump_error or code})")
        elif self._zstd is not None:
            self._zstd.close()  # type: ignore[no-untyped-call]
        elif self._gzip is not None:
            self._gzip.close()

    def __enter__(self) -> _Encoder:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(OSError):
                assert self._proc.stdin is not None
                self._proc.stdin.close()
            self._proc.kill()
            self._proc.wait()
        if self._pump is not None:
            self._pump.join()
        if self._proc is not None and self._proc.stdout is not None:
            self._proc.stdout.close()


class _WriterIO:
    """A file-like face of a BlobWriter for compressors that want `write`."""

    def __init__(self, writer: BlobWriter) -> None:
        self._writer = writer

    def write(self, data: bytes) -> int:
        self._writer.write(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass


def gzip_command() -> list[str] | None:
    """The fastest gzip compressor installed (igzip, then pigz), reproducible (no name or
    time in the header); None for zlib in this process."""
    path = shutil.which("igzip")
    if path:
        return [path, "-c", "-1", "-n"]
    path = shutil.which("pigz")
    if path:
        return [path, "-c", "-n", "-6"]
    return None


# --- the tar -------------------------------------------------------------------------------------


def write_layer_tar(root: Path, out: _Encoder | BinaryIO) -> None:
    """Write the layer directory `root` as an OCI layer tar to `out`."""
    archive = tarfile.TarFile(fileobj=out, mode="w", format=tarfile.PAX_FORMAT)  # type: ignore[arg-type]
    try:
        seen: dict[tuple[int, int], str] = {}
        if is_opaque(root):
            archive.addfile(_marker(OPAQUE_MARKER))
        for rel, path, st in _walk(str(root)):
            _add(archive, rel, path, st, seen)
    finally:
        archive.close()


def _walk(root: str) -> Iterator[tuple[str, str, os.stat_result]]:
    """(relative name, path, lstat) of every entry below `root`, depth first, each directory
    before its entries, names sorted bytewise."""
    yield from _walk_dir("", root)


def _walk_dir(rel_dir: str, path_dir: str) -> Iterator[tuple[str, str, os.stat_result]]:
    with os.scandir(path_dir) as it:
        names = sorted((e.name for e in it), key=os.fsencode)
    for name in names:
        rel = f"{rel_dir}/{name}" if rel_dir else name
        path = f"{path_dir}/{name}"
        st = os.lstat(path)
        yield rel, path, st
        if stat.S_ISDIR(st.st_mode):
            yield from _walk_dir(rel, path)


def _marker(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = 0o644
    return info


def _add(
    archive: tarfile.TarFile,
    rel: str,
    path: str,
    st: os.stat_result,
    seen: dict[tuple[int, int], str],
) -> None:
    mode = st.st_mode
    if is_whiteout(st):
        parent, _, base = rel.rpartition("/")
        archive.addfile(
            _marker(f"{parent}/{WHITEOUT_PREFIX}{base}" if parent else WHITEOUT_PREFIX + base)
        )
        return
    info = tarfile.TarInfo(rel)
    info.mode = stat.S_IMODE(mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.mtime = int(st.st_mtime)
    pax = _xattrs(path)
    if pax:
        info.pax_headers = pax
    if stat.S_ISDIR(mode):
        info.type = tarfile.DIRTYPE
        archive.addfile(info)
        if is_opaque(path):
            archive.addfile(_marker(f"{rel}/{OPAQUE_MARKER}"))
    elif stat.S_ISREG(mode):
        key = (st.st_dev, st.st_ino)
        first = seen.get(key) if st.st_nlink > 1 else None
        if first is not None:
            info.type = tarfile.LNKTYPE
            info.linkname = first
            archive.addfile(info)
            return
        if st.st_nlink > 1:
            seen[key] = rel
        info.size = st.st_size
        with open(path, "rb") as f:
            archive.addfile(info, f)
        if info.size != st.st_size:
            raise ImageError(f"layer file {path} changed size while being archived")
    elif stat.S_ISLNK(mode):
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(path)
        archive.addfile(info)
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        archive.addfile(info)
    elif stat.S_ISFIFO(mode):
        info.type = tarfile.FIFOTYPE
        archive.addfile(info)
    # sockets have no tar form: left out, as docker and buildkit do


def _xattrs(path: str) -> dict[str, str]:
    """The extended attributes to keep (security.capability & co., never overlay's own)."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    found = {}
    for name in sorted(names):
        if name.startswith(OVERLAY_XATTR_PREFIX):
            continue
        try:
            value = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
        found["SCHILY.xattr." + name] = value.decode("utf-8", "surrogateescape")
    return found
