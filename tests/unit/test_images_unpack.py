"""Layer tars unpack into overlayfs-format directories, and never outside them (needs root)."""

from __future__ import annotations

import gzip
import io
import os
import shutil
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard

from dirk.errors import ImageError
from dirk.workers.images import decompress
from dirk.workers.images.decompress import open_decompressed
from dirk.workers.images.unpack import LayerPathError, unpack_tar

MTIME = 1_600_000_000


def entry(
    name: str,
    kind: bytes = tarfile.REGTYPE,
    data: bytes = b"",
    *,
    mode: int = 0o644,
    uid: int = 0,
    gid: int = 0,
    linkname: str = "",
    dev: tuple[int, int] = (0, 0),
    pax: dict[str, str] | None = None,
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.uid, info.gid = uid, gid
    info.mtime = MTIME
    info.linkname = linkname
    info.devmajor, info.devminor = dev
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    if pax:
        info.pax_headers = pax
    return info, data


def make_tar(*entries: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def chunks(data: bytes, size: int = 7000) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def unpack(data: bytes, dest: Path) -> None:
    """Feed the tar in small odd-sized chunks, so headers and contents straddle chunk edges."""
    it = chunks(data)
    unpack_tar(lambda: next(it, b""), dest, "layer sha256:test")


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    d = tmp_path / "layer"
    d.mkdir()
    return d


def test_files_dirs_links_devices_keep_their_metadata(dest: Path) -> None:
    assert os.geteuid() == 0, "unpack tests need root (chown, mknod)"
    big = os.urandom(3 * 1024 * 1024 + 17)
    unpack(
        make_tar(
            entry("./", tarfile.DIRTYPE, mode=0o755),
            entry("./usr/", tarfile.DIRTYPE, mode=0o755),
            entry("./usr/bin/", tarfile.DIRTYPE, mode=0o750, uid=1, gid=2),
            entry("./usr/bin/su", data=b"#!su", mode=0o4755, uid=0, gid=0),
            entry("./usr/bin/big", data=big, mode=0o600, uid=1000, gid=1001),
            entry("./usr/bin/sudo", tarfile.LNKTYPE, linkname="./usr/bin/su"),
            entry("./usr/bin/sh", tarfile.SYMTYPE, linkname="/bin/busybox", uid=5, gid=6),
            entry("./dev/null", tarfile.CHRTYPE, mode=0o666, dev=(1, 3)),
            entry("./dev/sda", tarfile.BLKTYPE, mode=0o660, dev=(8, 0), gid=6),
            entry("./run/fifo", tarfile.FIFOTYPE, mode=0o620),
            entry("./tmp/", tarfile.DIRTYPE, mode=0o1777),
            entry("./cap", data=b"x", mode=0o755, pax={"SCHILY.xattr.user.note": "hello"}),
        ),
        dest,
    )
    su = dest / "usr/bin/su"
    assert su.read_bytes() == b"#!su"
    assert stat.S_IMODE(su.stat().st_mode) == 0o4755
    assert su.stat().st_mtime == MTIME
    bigp = dest / "usr/bin/big"
    assert bigp.read_bytes() == big
    assert (bigp.stat().st_uid, bigp.stat().st_gid, stat.S_IMODE(bigp.stat().st_mode)) == (
        1000,
        1001,
        0o600,
    )
    assert (dest / "usr/bin/sudo").stat().st_ino == su.stat().st_ino
    sh = dest / "usr/bin/sh"
    assert sh.is_symlink() and os.readlink(sh) == "/bin/busybox"
    assert (sh.lstat().st_uid, sh.lstat().st_gid) == (5, 6)
    assert sh.lstat().st_mtime == MTIME
    null = (dest / "dev/null").lstat()
    assert (
        stat.S_ISCHR(null.st_mode) and os.major(null.st_rdev) == 1 and os.minor(null.st_rdev) == 3
    )
    assert stat.S_IMODE(null.st_mode) == 0o666
    sda = (dest / "dev/sda").lstat()
    assert stat.S_ISBLK(sda.st_mode) and sda.st_rdev == os.makedev(8, 0) and sda.st_gid == 6
    assert stat.S_ISFIFO((dest / "run/fifo").lstat().st_mode)
    assert stat.S_IMODE((dest / "tmp").stat().st_mode) == 0o1777
    usr_bin = (dest / "usr/bin").stat()
    assert (usr_bin.st_uid, usr_bin.st_gid, stat.S_IMODE(usr_bin.st_mode)) == (1, 2, 0o750)
    # directory mtimes are set after their contents are written
    assert usr_bin.st_mtime == MTIME and (dest / "usr").stat().st_mtime == MTIME
    assert stat.S_IMODE(dest.stat().st_mode) == 0o755
    assert os.getxattr(dest / "cap", "user.note") == b"hello"


def test_whiteouts_become_overlayfs_whiteouts(dest: Path) -> None:
    unpack(
        make_tar(
            entry("etc/", tarfile.DIRTYPE, mode=0o755),
            entry("etc/.wh.motd"),
            entry("var/cache/.wh..wh..opq"),
            entry("var/cache/new", data=b"n"),
            entry(".wh.opt"),
        ),
        dest,
    )
    for name in ("etc/motd", "opt"):
        st = (dest / name).lstat()
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0, name
    assert not (dest / "etc/.wh.motd").exists()
    assert os.getxattr(dest / "var/cache", "trusted.overlay.opaque") == b"y"
    assert not (dest / "var/cache/.wh..wh..opq").exists()
    assert (dest / "var/cache/new").read_bytes() == b"n"


def test_same_layer_content_wins_over_its_whiteout(dest: Path) -> None:
    unpack(
        make_tar(
            entry(".wh.a"),
            entry("a", data=b"kept"),
            entry("b", data=b"also kept"),
            entry(".wh.b"),
            entry(".wh.d"),
            entry("d/file", data=b"in d"),
        ),
        dest,
    )
    assert (dest / "a").read_bytes() == b"kept"
    assert (dest / "b").read_bytes() == b"also kept"
    assert (dest / "d/file").read_bytes() == b"in d"


def test_later_entries_replace_earlier_ones(dest: Path) -> None:
    unpack(
        make_tar(
            entry("x", data=b"first"),
            entry("x", data=b"second"),
            entry("d/", tarfile.DIRTYPE),
            entry("d/f", data=b"f"),
            entry("d", tarfile.SYMTYPE, linkname="elsewhere"),
            entry("l", tarfile.SYMTYPE, linkname="one"),
            entry("l", tarfile.SYMTYPE, linkname="two"),
        ),
        dest,
    )
    assert (dest / "x").read_bytes() == b"second"
    assert os.readlink(dest / "d") == "elsewhere"
    assert os.readlink(dest / "l") == "two"


@pytest.mark.parametrize(
    "bad",
    [
        [entry("../evil", data=b"x")],
        [entry("/etc/evil", data=b"x")],
        [entry("a/../../evil", data=b"x")],
        [entry("ok", data=b"x"), entry("link", tarfile.LNKTYPE, linkname="../../etc/passwd")],
        [entry("link", tarfile.LNKTYPE, linkname="/etc/passwd")],
        [entry("esc", tarfile.SYMTYPE, linkname="/tmp"), entry("esc/evil", data=b"x")],
        [entry("esc", tarfile.SYMTYPE, linkname="../.."), entry("esc/evil", data=b"x")],
        [entry("esc", tarfile.SYMTYPE, linkname="/tmp"), entry("esc/.wh.x")],
    ],
)
def test_entries_escaping_the_root_are_refused(
    tmp_path: Path, dest: Path, bad: list[tuple[tarfile.TarInfo, bytes]]
) -> None:
    before = set(tmp_path.parent.iterdir())
    with pytest.raises(LayerPathError, match="refusing") as info:
        unpack(make_tar(*bad), dest)
    assert "layer sha256:test" in str(info.value)
    assert set(tmp_path.parent.iterdir()) == before
    assert not (tmp_path / "evil").exists() and not Path("/tmp/evil").exists()


def test_hardlink_to_missing_target_is_an_error(dest: Path) -> None:
    with pytest.raises(ImageError, match="not earlier in the same layer"):
        unpack(make_tar(entry("l", tarfile.LNKTYPE, linkname="missing")), dest)


def test_a_failing_entry_is_named_in_an_image_error(dest: Path) -> None:
    with pytest.raises(ImageError, match=r"layer sha256:test: cannot unpack entry 'l'.*"):
        unpack(
            make_tar(entry("d", tarfile.DIRTYPE), entry("l", tarfile.LNKTYPE, linkname="d")), dest
        )


def test_empty_blob_and_empty_tar_are_empty_layers(dest: Path) -> None:
    unpack(b"", dest)
    unpack(b"\0" * 1024, dest)
    assert list(dest.iterdir()) == []


def test_garbage_is_not_a_tar(dest: Path) -> None:
    with pytest.raises(ImageError, match="not a valid tar"):
        unpack(b"hello, this is not a tar archive" * 40, dest)


def test_truncated_tar_is_an_error(dest: Path) -> None:
    data = make_tar(entry("f", data=os.urandom(100_000)))
    with pytest.raises(ImageError, match=r"truncated|ends inside"):
        unpack(data[:50_000], dest)


GZIP_TOOLS = ["igzip", "pigz", None]  # None: zlib in this process


def use_gzip_tool(monkeypatch: pytest.MonkeyPatch, tool: str | None) -> None:
    if tool is not None:
        path = shutil.which(tool)
        assert path, f"{tool} is missing: run `make setup` (Debian packages isal, pigz)"
        monkeypatch.setattr(decompress, "gunzip_command", lambda: [path, "-dc"])
    else:
        monkeypatch.setattr(decompress, "gunzip_command", lambda: None)


@pytest.mark.parametrize(
    ("compression", "tool"),
    [("gzip", t) for t in GZIP_TOOLS] + [("gzip-multi", t) for t in GZIP_TOOLS]
    + [("zstd", None), ("none", None)],
)  # fmt: skip
def test_blobs_are_decompressed_by_their_magic(
    tmp_path: Path, dest: Path, monkeypatch: pytest.MonkeyPatch, compression: str, tool: str | None
) -> None:
    use_gzip_tool(monkeypatch, tool)
    tar = make_tar(
        entry("a", data=b"A" * 5_000_000), entry("b/c", data=os.urandom(300_000), mode=0o700)
    )
    if compression == "gzip":
        blob = gzip.compress(tar, compresslevel=1)
    elif compression == "gzip-multi":
        blob = gzip.compress(tar[:100_000]) + gzip.compress(tar[100_000:])
    elif compression == "zstd":
        cctx = zstandard.ZstdCompressor()
        blob = cctx.compress(tar[:200_000]) + cctx.compress(tar[200_000:])  # two frames
    else:
        blob = tar
    path = tmp_path / "blob"
    path.write_bytes(blob)
    with open_decompressed(path, "layer x") as source:
        unpack_tar(source, dest, "layer x")
    assert (dest / "a").read_bytes() == b"A" * 5_000_000
    assert stat.S_IMODE((dest / "b/c").stat().st_mode) == 0o700


@pytest.mark.parametrize("tool", GZIP_TOOLS)
@pytest.mark.parametrize("damage", ["corrupt", "truncated"])
def test_damaged_gzip_is_an_error(
    tmp_path: Path, dest: Path, monkeypatch: pytest.MonkeyPatch, tool: str | None, damage: str
) -> None:
    use_gzip_tool(monkeypatch, tool)
    blob = bytearray(gzip.compress(make_tar(entry("a", data=os.urandom(200_000)))))
    if damage == "corrupt":
        blob[len(blob) // 2 : len(blob) // 2 + 64] = b"\xff" * 64
    else:
        del blob[len(blob) - 6 :]  # the end of the archive is there, the gzip trailer is not
    path = tmp_path / "blob"
    path.write_bytes(bytes(blob))
    with (
        pytest.raises(ImageError, match=r"corrupt gzip|not a valid tar|truncated|ends"),
        open_decompressed(path, "layer x") as source,
    ):
        unpack_tar(source, dest, "layer x")


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_long_names_and_link_targets(dest: Path, fmt: int) -> None:
    deep = "/".join(["d" * 60] * 4) + "/file-with-a-long-name"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info, data in [
            entry(deep, data=b"deep"),
            entry("short", tarfile.LNKTYPE, linkname=deep),
            entry("sym", tarfile.SYMTYPE, linkname="/" + deep),
        ]:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    unpack(buf.getvalue(), dest)
    assert (dest / deep).read_bytes() == b"deep"
    assert (dest / "short").stat().st_ino == (dest / deep).stat().st_ino
    assert os.readlink(dest / "sym") == "/" + deep
