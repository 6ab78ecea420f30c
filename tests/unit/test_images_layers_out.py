"""Layer directories out as OCI layer tars (needs root: whiteouts are 0:0 character devices):
whiteouts and opaque directories, links, xattrs, a deterministic tar, blobs made once."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from dirk.state.blobs import BlobStore
from dirk.state.db import Database
from dirk.state.layout import StateLayout
from dirk.workers.images.decompress import open_decompressed
from dirk.workers.images.layers_out import LayerBlobs, write_layer_tar
from dirk.workers.images.unpack import unpack_tar
from dirk.workers.snapshots.layers import LayerStore
from dirk.workers.snapshots.layerview import OPAQUE_XATTR


@pytest.fixture
def layer_dir(tmp_path: Path) -> Path:
    assert os.geteuid() == 0, "layer tests need root (mknod, chown)"
    root = tmp_path / "layer"
    (root / "etc" / "conf.d").mkdir(parents=True)
    (root / "etc" / "hosts").write_text("127.0.0.1 localhost\n")
    os.link(root / "etc" / "hosts", root / "etc" / "hosts.bak")
    (root / "bin").mkdir()
    (root / "bin" / "tool").write_bytes(b"#!/bin/sh\n")
    os.chown(root / "bin" / "tool", 1000, 1001)
    os.chmod(root / "bin" / "tool", 0o4755)
    os.setxattr(root / "bin" / "tool", "user.note", b"\x00\xffbinary")
    os.symlink("tool", root / "bin" / "alias")
    os.mknod(root / "etc" / "gone", stat.S_IFCHR, os.makedev(0, 0))
    os.setxattr(root / "etc" / "conf.d", OPAQUE_XATTR, b"y")
    (root / "etc" / "conf.d" / "only.conf").write_text("x=1\n")
    os.utime(root / "etc" / "hosts", (1_600_000_000, 1_600_000_000))
    return root


def tar_of(root: Path) -> bytes:
    out = io.BytesIO()
    write_layer_tar(root, out)
    return out.getvalue()


def test_overlay_format_becomes_oci_whiteouts_and_links(layer_dir: Path) -> None:
    data = tar_of(layer_dir)
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        members = {m.name: m for m in archive.getmembers()}
        names = [m.name for m in archive.getmembers()]
    assert names == [
        "bin",
        "bin/alias",
        "bin/tool",
        "etc",
        "etc/conf.d",
        "etc/conf.d/.wh..wh..opq",
        "etc/conf.d/only.conf",
        "etc/.wh.gone",  # at the place of `gone`: entries follow the directory's sorted names
        "etc/hosts",
        "etc/hosts.bak",
    ]
    assert members["etc/hosts.bak"].islnk() and members["etc/hosts.bak"].linkname == "etc/hosts"
    assert members["bin/alias"].issym() and members["bin/alias"].linkname == "tool"
    tool = members["bin/tool"]
    assert (tool.mode, tool.uid, tool.gid) == (0o4755, 1000, 1001)
    assert tool.uname == "" and tool.gname == ""
    assert members["etc/hosts"].mtime == 1_600_000_000
    assert tool.pax_headers["SCHILY.xattr.user.note"].encode("utf-8", "surrogateescape") == (
        b"\x00\xffbinary"
    )
    assert not any("trusted.overlay" in k for m in members.values() for k in m.pax_headers)


def test_the_tar_unpacks_to_the_same_layer(layer_dir: Path, tmp_path: Path) -> None:
    data = tar_of(layer_dir)
    chunks = iter([data, b""])
    back = tmp_path / "back"
    back.mkdir()
    unpack_tar(lambda: next(chunks), back, "test layer")
    gone = os.lstat(back / "etc" / "gone")
    assert stat.S_ISCHR(gone.st_mode) and gone.st_rdev == 0
    assert os.getxattr(back / "etc" / "conf.d", OPAQUE_XATTR) == b"y"
    assert os.stat(back / "etc" / "hosts").st_ino == os.stat(back / "etc" / "hosts.bak").st_ino
    assert os.getxattr(back / "bin" / "tool", "user.note") == b"\x00\xffbinary"
    assert tar_of(back) == data  # and archives the same again: nothing was lost


def test_the_tar_is_deterministic(layer_dir: Path) -> None:
    """Whole-second mtimes only, no atime or ctime: touching what a tar does not hold changes
    nothing; an mtime a second later changes the tar."""
    os.utime(layer_dir / "bin", (1_500_000_000, 1_500_000_000))
    first = tar_of(layer_dir)
    assert tar_of(layer_dir) == first
    os.chmod(layer_dir / "bin" / "tool", 0o4755)  # a new ctime
    os.utime(layer_dir / "bin", (1_400_000_000, 1_500_000_000.7))  # another atime, a fraction
    assert tar_of(layer_dir) == first
    os.utime(layer_dir / "bin", (1_500_000_001, 1_500_000_001))
    assert tar_of(layer_dir) != first


@pytest.fixture
def store(tmp_path: Path) -> LayerBlobs:
    layout = StateLayout(tmp_path / "state").ensure()
    db = Database(layout.db_path)
    return LayerBlobs(BlobStore(layout.blobs, layout.tmp), LayerStore(layout, db), db)


def test_blobs_are_made_once_and_recompressed_to_the_same_tar(
    store: LayerBlobs, layer_dir: Path
) -> None:
    with store.layers.create() as builder:
        for entry in layer_dir.iterdir():
            os.rename(entry, builder.path / entry.name)
    layer_id = builder.layer_id
    gz = store.get(layer_id, None)
    assert gz.compression == "gzip"
    assert store.get(layer_id, None) == gz
    made = store.blobs.path(gz.digest).stat().st_mtime_ns
    assert store.get(layer_id, "gzip") == gz
    assert store.blobs.path(gz.digest).stat().st_mtime_ns == made
    zst = store.get(layer_id, "zstd")
    plain = store.get(layer_id, "none")
    assert zst.diff_id == plain.diff_id == gz.diff_id
    assert plain.digest == plain.diff_id  # an uncompressed blob is the tar itself
    assert store.blobs.path(zst.digest).read_bytes()[:4] == b"\x28\xb5\x2f\xfd"
    with open_decompressed(store.blobs.path(zst.digest), "zstd blob") as read:
        tar = b"".join(iter(read, b""))
    assert tar == store.blobs.path(plain.digest).read_bytes()
    # A blob gone from the store is made again, not trusted.
    store.blobs.path(gz.digest).unlink()
    assert store.get(layer_id, "gzip").diff_id == gz.diff_id
