"""Decompressed chunk streams of layer blobs: gzip, zstd or plain tar, sniffed by magic bytes.

gzip goes through an `igzip -dc` or `pigz -dc` child when one is installed: it inflates on
another core while this process writes files, which matters on a 2-core machine (zlib in this
process is the fallback). Nothing
uncompressed is ever written to disk: the tar reader pulls chunks from here as it extracts.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import shutil
import subprocess
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import zstandard

from dirk.errors import ImageError

#: A function returning the next chunk of decompressed bytes, b"" at the end.
ChunkSource = Callable[[], bytes]

CHUNK = 1024 * 1024
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


def sniff(head: bytes) -> str:
    """ "gzip", "zstd" or "none": the actual compression, whatever the media type claims."""
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    if head.startswith(_ZSTD_MAGIC):
        return "zstd"
    return "none"


@contextlib.contextmanager
def open_decompressed(
    path: Path, what: str, *, use_child: bool | None = None
) -> Iterator[ChunkSource]:
    """Yield a ChunkSource over the decompressed content of the blob at `path`."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        kind = sniff(os.pread(fd, 4, 0))
        with decompressed(fd, kind, what, use_child=use_child) as source:
            yield source
    finally:
        os.close(fd)


@contextlib.contextmanager
def decompressed(
    fd: int, kind: str, what: str, *, use_child: bool | None = None
) -> Iterator[ChunkSource]:
    """Yield a ChunkSource over what `fd` (a file at offset 0, or a pipe) holds, compressed as
    `kind` says (see `sniff`). `fd` stays open. gzip goes through a child process (see
    `gunzip_command`) unless `use_child` is False."""
    raw = io.FileIO(fd, "rb", closefd=False)
    if kind == "gzip":
        inflater = gunzip_command() if use_child is not False else None
        if inflater:
            with _child(inflater, fd, what) as source:
                yield source
        else:
            yield _GzipSource(raw, what)
    elif kind == "zstd":
        yield _zstd_source(raw, what)
    else:
        yield lambda: raw.read(CHUNK) or b""


def make_pipe() -> tuple[int, int]:
    """An OS pipe with a 1 MiB buffer (fewer wake-ups than the default 64 KiB)."""
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    with contextlib.suppress(OSError):
        fcntl.fcntl(write_fd, _F_SETPIPE_SZ, CHUNK)
    return read_fd, write_fd


class _GzipSource:
    """zlib inflation in bounded steps (a small blob may inflate to gigabytes)."""

    def __init__(self, f: BinaryIO, what: str) -> None:
        self._f = f
        self._what = what
        self._d = zlib.decompressobj(wbits=31)
        self._pending = b""

    def __call__(self) -> bytes:
        while True:
            data = self._d.unconsumed_tail or self._pending or self._f.read(CHUNK)
            self._pending = b""
            if not data:
                if not self._d.eof:
                    raise ImageError(f"{self._what}: the gzip stream ends early (truncated blob)")
                return b""
            try:
                out = self._d.decompress(data, 4 * CHUNK)
            except zlib.error as exc:
                raise ImageError(f"{self._what}: corrupt gzip data ({exc})") from None
            if self._d.eof and self._d.unused_data:
                # A multi-member gzip file: the next member starts a fresh stream.
                self._pending = self._d.unused_data
                self._d = zlib.decompressobj(wbits=31)
            if out:
                return out


def _zstd_source(f: BinaryIO, what: str) -> ChunkSource:
    reader = zstandard.ZstdDecompressor().stream_reader(f, read_size=CHUNK, read_across_frames=True)

    def read() -> bytes:
        try:
            return reader.read(4 * CHUNK)
        except zstandard.ZstdError as exc:
            raise ImageError(f"{what}: corrupt zstd data ({exc})") from None

    return read


def gunzip_command() -> list[str] | None:
    """The fastest gzip decompressor installed: igzip (ISA-L, Debian package isal; 2.4x faster
    than pigz here), then pigz; None when neither is (zlib in this process then)."""
    for name in ("igzip", "pigz"):
        path = shutil.which(name)
        if path:
            return [path, "-dc"]
    return None


@contextlib.contextmanager
def _child(cmd: list[str], fd: int, what: str) -> Iterator[ChunkSource]:
    proc = subprocess.Popen(cmd, stdin=fd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    out_fd = proc.stdout.fileno()
    with contextlib.suppress(OSError):
        fcntl.fcntl(out_fd, _F_SETPIPE_SZ, CHUNK)
    finished = False

    def read() -> bytes:
        nonlocal finished
        chunk = os.read(out_fd, CHUNK)
        if not chunk:
            finished = True
            err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
            if proc.wait() != 0:
                tool = os.path.basename(cmd[0])
                raise ImageError(f"{what}: corrupt gzip data ({tool}: {err or proc.returncode})")
        return chunk

    try:
        yield read
    finally:
        if not finished and proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
