"""Content-addressed blob storage: every blob is stored under its sha256 and verified on write."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from dirk.errors import DigestMismatchError, StateError


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _split(digest: str) -> tuple[str, str]:
    algo, sep, hexpart = digest.partition(":")
    if (
        not sep
        or algo != "sha256"
        or len(hexpart) != 64
        or not all(c in "0123456789abcdef" for c in hexpart)
    ):
        raise StateError(f"unsupported or malformed digest {digest!r}: expected sha256:<64 hex>")
    return algo, hexpart


class BlobWriter:
    """Streams a blob to a temporary file while hashing it; `commit` verifies and publishes."""

    def __init__(self, store: BlobStore, expected: str | None) -> None:
        self._store = store
        self._expected = expected
        fd, name = tempfile.mkstemp(dir=store.tmp_dir, prefix="blob-")
        self._file: BinaryIO = os.fdopen(fd, "wb")
        self._tmp = Path(name)
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self._file.write(chunk)
        self.size += len(chunk)

    def commit(self) -> str:
        """Verify the digest, then move the blob into place atomically. Returns the digest."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        digest = "sha256:" + self._hash.hexdigest()
        if self._expected is not None and digest != self._expected:
            self._tmp.unlink(missing_ok=True)
            raise DigestMismatchError(
                f"content does not match its digest: expected {self._expected}, got {digest} "
                f"({self.size} bytes); nothing was stored. The registry or a proxy served "
                "corrupt data: retry, and report it to the registry's operator if it persists"
            )
        final = self._store.path(digest)
        final.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.replace(self._tmp, final)
        return digest

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        self._tmp.unlink(missing_ok=True)


class BlobStore:
    """Blobs live at `<root>/sha256/<hex>`; a blob present there is always complete and valid."""

    def __init__(self, root: Path, tmp_dir: Path) -> None:
        self.root = root
        self.tmp_dir = tmp_dir
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp_dir.mkdir(mode=0o700, parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        algo, hexpart = _split(digest)
        return self.root / algo / hexpart

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    @contextmanager
    def writer(self, expected: str | None = None) -> Iterator[BlobWriter]:
        """Write a blob in chunks; it is published only if the block ends without error and
        `commit()` was called (and, with `expected`, only if the digest matches)."""
        w = BlobWriter(self, expected)
        try:
            yield w
        finally:
            w.abort()

    def put_bytes(self, data: bytes, expected: str | None = None) -> str:
        """Stores `data`; content already in the store is not written again (a blob present
        is complete and valid), so putting the same manifest or config twice costs a hash."""
        digest = sha256_digest(data)
        if (expected is None or expected == digest) and self.has(digest):
            return digest
        with self.writer(expected) as w:
            w.write(data)
            return w.commit()

    def get_bytes(self, digest: str) -> bytes:
        try:
            return self.path(digest).read_bytes()
        except FileNotFoundError:
            raise StateError(f"blob {digest} is not in the store") from None
