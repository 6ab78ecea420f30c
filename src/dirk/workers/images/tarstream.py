"""A forward-only file object over a chunk stream, so `tarfile` can read a layer as it inflates.

tarfile's own stream mode ("r|") re-slices its buffer on every header read; its seekable mode
only ever seeks forward when members are read in order, which this class allows (by skipping)
while refusing to go back. File contents are copied straight from the chunk buffer to a file
descriptor, without an intermediate bytes object per file.
"""

from __future__ import annotations

import os

from dirk.workers.images.decompress import ChunkSource


class ForwardReader:
    def __init__(self, source: ChunkSource) -> None:
        self._source = source
        self._buf = memoryview(b"")
        self._pos = 0  # position in _buf
        self._base = 0  # archive offset of _buf[0]
        self._eof = False

    def _more(self) -> bool:
        """Replace the exhausted buffer by the next chunk; False at the end of the stream."""
        if self._eof:
            return False
        chunk = self._source()
        if not chunk:
            self._eof = True
            return False
        self._base += len(self._buf)
        self._buf = memoryview(chunk)
        self._pos = 0
        return True

    def tell(self) -> int:
        return self._base + self._pos

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 1:
            offset += self.tell()
        elif whence != 0:
            raise OSError("a layer stream can only seek to absolute or relative positions")
        here = self.tell()
        if offset < here:
            raise OSError(f"a layer stream cannot seek backwards (from {here} to {offset})")
        self.skip(offset - here)
        return self.tell()

    def skip(self, n: int) -> None:
        while n > 0:
            avail = len(self._buf) - self._pos
            if avail == 0:
                if not self._more():
                    return
                continue
            step = min(avail, n)
            self._pos += step
            n -= step

    def peek(self, n: int) -> memoryview:
        """The next `n` bytes (fewer at the end) without consuming them."""
        while len(self._buf) - self._pos < n and not self._eof:
            chunk = self._source()
            if not chunk:
                self._eof = True
                break
            self._base += self._pos
            self._buf = memoryview(self._buf[self._pos :].tobytes() + chunk)
            self._pos = 0
        return self._buf[self._pos : self._pos + n]

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            parts = [bytes(self._buf[self._pos :])]
            self._pos = len(self._buf)
            while self._more():
                parts.append(bytes(self._buf))
                self._pos = len(self._buf)
            return b"".join(parts)
        avail = len(self._buf) - self._pos
        if avail >= n:
            data = self._buf[self._pos : self._pos + n].tobytes()
            self._pos += n
            return data
        parts = []
        while n > 0:
            avail = len(self._buf) - self._pos
            if avail == 0:
                if not self._more():
                    break
                continue
            step = min(avail, n)
            parts.append(self._buf[self._pos : self._pos + step].tobytes())
            self._pos += step
            n -= step
        return b"".join(parts)

    def copy_to(self, fd: int, n: int) -> int:
        """Write the next `n` bytes to `fd`; returns how many there were (short at EOF)."""
        done = 0
        while done < n:
            avail = len(self._buf) - self._pos
            if avail == 0:
                if not self._more():
                    break
                continue
            step = min(avail, n - done)
            view = self._buf[self._pos : self._pos + step]
            while view:
                written = os.write(fd, view)
                view = view[written:]
            self._pos += step
            done += step
        return done

    def drain(self) -> None:
        """Consume whatever is left (padding after the end-of-archive blocks)."""
        self._pos = len(self._buf)
        while self._more():
            self._pos = len(self._buf)
