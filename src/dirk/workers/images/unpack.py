"""Extract one layer tar into a directory in overlayfs format. Blocking: run it in a thread.

OCI whiteouts become what overlayfs understands: `.wh.NAME` a 0:0 character device NAME, and
`.wh..wh..opq` the xattr trusted.overlay.opaque=y on its directory. Ownership, modes (setuid
included), mtimes, device nodes, hard and symbolic links and PAX xattrs are kept. No entry may
land outside the layer directory: absolute names, `..` components and writes through symlinks
are refused, since a layer comes from the network.
"""

from __future__ import annotations

import base64
import binascii
import os
import shutil
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path

import attrs

from dirk.errors import ImageError
from dirk.workers.images.decompress import ChunkSource
from dirk.workers.images.tarstream import ForwardReader
from dirk.workers.snapshots.fileops import NEW_FILE
from dirk.workers.snapshots.layerview import OPAQUE_XATTR, OVERLAY_XATTR_PREFIX, is_whiteout

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
_PAX_XATTR = "SCHILY.xattr."
_LIBARCHIVE_XATTR = "LIBARCHIVE.xattr."


class LayerPathError(ImageError):
    """A layer entry would be written outside the layer directory."""


@attrs.define
class UnpackStats:
    entries: int = 0
    bytes: int = 0


def unpack_tar(source: ChunkSource, dest: Path, what: str) -> UnpackStats:
    """Extract the tar stream from `source` into the existing, empty directory `dest`.

    `what` names the layer in error messages. On error `dest` is left partly filled: the caller
    discards it.
    """
    reader = ForwardReader(source)
    try:
        archive = tarfile.TarFile(fileobj=reader, mode="r", errors="surrogateescape")  # type: ignore[arg-type]
    except tarfile.ReadError as exc:
        if reader.tell() == 0 and not reader.read(1):
            return UnpackStats()  # an empty blob: an empty layer
        raise ImageError(f"{what} is not a valid tar archive ({exc})") from None
    extractor = _Extractor(dest, what, archive, reader)
    first = True  # tarfile has already read the first header
    while True:
        member = None
        if not first and not archive.pax_headers:  # global PAX headers: tarfile applies them
            reader.seek(archive.offset)
            member = parse_ustar_header(reader.peek(tarfile.BLOCKSIZE).tobytes())
            if member is not None:
                member.offset = archive.offset
                member.offset_data = archive.offset + tarfile.BLOCKSIZE
                archive.offset = member.offset_data + (
                    _blocks(member.size) if member.isreg() else 0
                )
                reader.skip(tarfile.BLOCKSIZE)
        if member is None:
            try:
                member = archive.next()
            except tarfile.TarError as exc:
                raise ImageError(f"{what} is not a valid tar archive ({exc})") from None
            if member is None:
                break
            archive.members.clear()  # type: ignore[attr-defined]  # nothing looks members up
        first = False
        try:
            extractor.extract(member)
        except OSError as exc:  # a full disk, a hard link to a directory, ...
            raise ImageError(f"{what}: cannot unpack entry {member.name!r}: {exc}") from exc
    extractor.finish()
    reader.drain()  # the end-of-archive padding, and the end of the compressed stream
    return extractor.stats


_USTAR_MAGIC = b"ustar\x0000"
_PLAIN_TYPES = frozenset(b"\x0001234567")
_NUMERIC_FIELDS = (
    (100, 108),
    (108, 116),
    (116, 124),
    (124, 136),
    (136, 148),
    (329, 337),
    (337, 345),
)


def parse_ustar_header(buf: bytes) -> tarfile.TarInfo | None:
    """A fast path for the plain POSIX ustar headers most layer entries have; None for anything
    else (PAX and GNU extensions, base-256 numbers, bad checksums), which tarfile then reads.
    tarfile's own parser costs about a third of the CPU time of an unpack."""
    if len(buf) < tarfile.BLOCKSIZE or buf[257:265] != _USTAR_MAGIC or buf[156] not in _PLAIN_TYPES:
        return None
    try:
        mode, uid, gid, size, mtime, major, minor = (
            int(buf[a:b].strip(b"\0 ") or b"0", 8) for a, b in _NUMERIC_FIELDS
        )
        checksum = int(buf[148:156].strip(b"\0 ") or b"0", 8)
    except ValueError:
        return None
    if checksum != sum(buf) - sum(buf[148:156]) + 8 * 32:
        return None
    name = buf[:100].split(b"\0", 1)[0]
    prefix = buf[345:500].split(b"\0", 1)[0]
    if prefix:
        name = prefix + b"/" + name
    info = tarfile.TarInfo(name.decode("utf-8", "surrogateescape"))
    kind = buf[156:157]
    if kind in (tarfile.AREGTYPE, tarfile.REGTYPE) and name.endswith(b"/"):
        kind = tarfile.DIRTYPE
    info.type = kind
    info.mode, info.uid, info.gid, info.size, info.mtime = mode, uid, gid, size, mtime
    info.devmajor, info.devminor = major, minor
    info.linkname = buf[157:257].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
    return info


def _blocks(size: int) -> int:
    return -(-size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE


class _Extractor:
    def __init__(self, dest: Path, what: str, archive: tarfile.TarFile, reader: ForwardReader):
        self.root = str(dest)
        self.what = what
        self.archive = archive
        self.reader = reader
        self.stats = UnpackStats()
        self.dirs: set[str] = {""}  # relative paths known to be real directories we made
        self.setgid_dirs: set[str] = set()
        self.dir_times: list[tuple[str, float]] = []
        self.is_root = os.geteuid() == 0

    # --- names ----------------------------------------------------------------------------

    def clean(self, name: str, kind: str = "entry") -> str:
        if name.startswith("/"):
            raise LayerPathError(
                f"{self.what}: {kind} {name!r} is an absolute path; refusing to unpack a layer "
                "that writes outside its root (the image is malformed or malicious)"
            )
        parts = [p for p in name.split("/") if p and p != "."]
        if ".." in parts:
            raise LayerPathError(
                f"{self.what}: {kind} {name!r} contains '..'; refusing to unpack a layer that "
                "writes outside its root (the image is malformed or malicious)"
            )
        return "/".join(parts)

    def ensure_dir(self, rel: str, entry: str) -> None:
        """Make sure `rel` is a real directory of ours (never a symlink), creating it if needed."""
        if rel in self.dirs:
            return
        cur = ""
        for comp in rel.split("/"):
            cur = f"{cur}/{comp}" if cur else comp
            if cur in self.dirs:
                continue
            path = f"{self.root}/{cur}"
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                os.mkdir(path, 0o755)
            else:
                if not stat.S_ISDIR(st.st_mode):
                    if not is_whiteout(st):
                        raise LayerPathError(
                            f"{self.what}: entry {entry!r} lies below {cur!r}, which is not a "
                            f"directory in this layer ({_kind(st)}); refusing to write through it"
                        )
                    os.unlink(path)  # same-layer content wins over a same-layer whiteout
                    os.mkdir(path, 0o755)
            self.dirs.add(cur)

    def remove(self, rel: str) -> None:
        """Remove whatever is at `rel` so a later entry of the same name can replace it."""
        path = f"{self.root}/{rel}"
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(path)
            prefix = rel + "/"
            self.dirs = {d for d in self.dirs if d != rel and not d.startswith(prefix)}
        else:
            os.unlink(path)

    # --- entries --------------------------------------------------------------------------

    def extract(self, m: tarfile.TarInfo) -> None:
        self.stats.entries += 1
        rel = self.clean(m.name)
        parent, _, base = rel.rpartition("/")
        if rel:
            self.ensure_dir(parent, m.name)
        if base.startswith(WHITEOUT_PREFIX):
            self.whiteout(parent, base, m.name)
            return
        if m.isdir():
            self.directory(rel, m)
        elif not rel:
            raise ImageError(
                f"{self.what}: entry {m.name!r} names the layer root but is no directory"
            )
        elif m.isreg():
            self.regular(rel, parent, m)
        elif m.issym():
            self.create(rel, lambda p: os.symlink(m.linkname, p))
            self.attributes(rel, m, link=True)
        elif m.islnk():
            self.hardlink(rel, m)
        elif m.ischr() or m.isblk() or m.isfifo():
            self.device(rel, m)
        else:
            raise ImageError(f"{self.what}: entry {m.name!r} has unsupported tar type {m.type!r}")

    def create(self, rel: str, make: Callable[[str], None]) -> None:
        path = f"{self.root}/{rel}"
        try:
            make(path)
        except FileExistsError:
            self.remove(rel)
            make(path)

    def whiteout(self, parent: str, base: str, name: str) -> None:
        parent_path = f"{self.root}/{parent}" if parent else self.root
        if base == OPAQUE_MARKER:
            os.setxattr(parent_path, OPAQUE_XATTR, b"y")
            return
        target = base[len(WHITEOUT_PREFIX) :]
        if not target or target in (".", "..") or target.startswith(WHITEOUT_PREFIX):
            raise ImageError(f"{self.what}: malformed whiteout entry {name!r}")
        path = f"{parent_path}/{target}"
        try:
            os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))
        except FileExistsError:
            pass  # the same layer also has the file: its content wins (OCI image spec)
        except PermissionError:
            raise ImageError(
                f"{self.what}: cannot create the whiteout for {name!r}: making a 0:0 character "
                "device needs root (CAP_MKNOD); run the engine as root"
            ) from None

    def directory(self, rel: str, m: tarfile.TarInfo) -> None:
        path = f"{self.root}/{rel}" if rel else self.root
        if rel not in self.dirs:
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                st = os.lstat(path)
                if not stat.S_ISDIR(st.st_mode):
                    self.remove(rel)
                    os.mkdir(path, 0o700)
            self.dirs.add(rel)
        if m.mode & stat.S_ISGID:
            self.setgid_dirs.add(rel)
        else:
            self.setgid_dirs.discard(rel)
        if self.is_root:
            os.chown(path, m.uid, m.gid)
        os.chmod(path, m.mode & 0o7777)
        self.xattrs(path, m)
        self.dir_times.append((path, m.mtime))

    def regular(self, rel: str, parent: str, m: tarfile.TarInfo) -> None:
        path = f"{self.root}/{rel}"
        try:
            fd = os.open(path, NEW_FILE, 0o600)
        except FileExistsError:
            self.remove(rel)
            fd = os.open(path, NEW_FILE, 0o600)
        try:
            if m.sparse is not None:
                data = self.archive.extractfile(m)
                assert data is not None
                while chunk := data.read(1024 * 1024):
                    os.write(fd, chunk)
            elif m.size:
                self.reader.seek(m.offset_data)
                if self.reader.copy_to(fd, m.size) != m.size:
                    raise ImageError(f"{self.what}: the archive ends inside {m.name!r} (truncated)")
            self.stats.bytes += m.size
            if self.is_root and (m.uid or m.gid or parent in self.setgid_dirs):
                os.fchown(fd, m.uid, m.gid)
            os.fchmod(fd, m.mode & 0o7777)
            self.xattrs(fd, m)
            os.utime(fd, (m.mtime, m.mtime))
        finally:
            os.close(fd)

    def hardlink(self, rel: str, m: tarfile.TarInfo) -> None:
        target = self.clean(m.linkname, "hard link target")
        tparent = target.rpartition("/")[0]
        if tparent not in self.dirs:
            self.ensure_dir(tparent, m.linkname)
        tpath = f"{self.root}/{target}"
        if not os.path.lexists(tpath):
            raise ImageError(
                f"{self.what}: hard link {m.name!r} points to {m.linkname!r}, which is not "
                "earlier in the same layer"
            )
        self.create(rel, lambda p: os.link(tpath, p, follow_symlinks=False))

    def device(self, rel: str, m: tarfile.TarInfo) -> None:
        if m.isfifo():
            self.create(rel, lambda p: os.mkfifo(p, 0o600))
        else:
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
            dev = os.makedev(m.devmajor, m.devminor)
            try:
                self.create(rel, lambda p: os.mknod(p, kind | 0o600, dev))
            except PermissionError:
                raise ImageError(
                    f"{self.what}: cannot create device node {m.name!r}: that needs root "
                    "(CAP_MKNOD); run the engine as root"
                ) from None
        self.attributes(rel, m, link=False)

    def attributes(self, rel: str, m: tarfile.TarInfo, *, link: bool) -> None:
        path = f"{self.root}/{rel}"
        if self.is_root:
            os.chown(path, m.uid, m.gid, follow_symlinks=False)
        if not link:
            os.chmod(path, m.mode & 0o7777)
        self.xattrs(path, m)
        os.utime(path, (m.mtime, m.mtime), follow_symlinks=False)

    def xattrs(self, target: str | int, m: tarfile.TarInfo) -> None:
        if not m.pax_headers:
            return
        for key, value in m.pax_headers.items():
            if key.startswith(_PAX_XATTR):
                name, raw = key[len(_PAX_XATTR) :], value.encode("utf-8", "surrogateescape")
            elif key.startswith(_LIBARCHIVE_XATTR):
                try:
                    name, raw = key[len(_LIBARCHIVE_XATTR) :], base64.b64decode(value)
                except binascii.Error:
                    continue
            else:
                continue
            if name.startswith(OVERLAY_XATTR_PREFIX):
                continue  # only whiteout entries may steer overlayfs
            try:
                if isinstance(target, int):
                    os.setxattr(target, name, raw)
                else:
                    os.setxattr(target, name, raw, follow_symlinks=False)
            except OSError as exc:
                raise ImageError(
                    f"{self.what}: cannot set xattr {name!r} on {m.name!r} ({exc.strerror}); the "
                    "state directory's filesystem must support extended attributes"
                ) from None

    def finish(self) -> None:
        """Directory mtimes last: creating their entries changed them."""
        for path, mtime in reversed(self.dir_times):
            os.utime(path, (mtime, mtime), follow_symlinks=False)


def _kind(st: os.stat_result) -> str:
    if stat.S_ISLNK(st.st_mode):
        return "a symbolic link"
    if stat.S_ISREG(st.st_mode):
        return "a regular file"
    return "a special file"
