"""Reproducible single-layer OCI images: layer tar+gzip, config, manifest, image layout.

Used by build_test_images.py. Every byte depends only on the input tree and the epoch: entries
are sorted, mtimes clamped, user names dropped (numeric ids stay), gzip has no name or time.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

import attrs

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"
#: Entry fields kept from a source tar's PAX records: extended attributes (file capabilities).
KEPT_PAX_PREFIX = "SCHILY.xattr."


@attrs.frozen
class Blob:
    """Content in the layout's blob store, named by digest."""

    digest: str
    size: int
    media_type: str

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@attrs.frozen
class Layer:
    blob: Blob
    diff_id: str


@attrs.frozen
class ImageConfig:
    """What the image's config says about how to run it."""

    env: tuple[str, ...]
    cmd: tuple[str, ...]
    working_dir: str = "/"
    #: The OCI architecture the image's binaries are built for.
    architecture: str = "amd64"
    entrypoint: tuple[str, ...] = ()
    #: "5432/tcp", ...
    exposed_ports: tuple[str, ...] = ()
    stop_signal: str = ""


@attrs.frozen
class Image:
    """A written OCI image layout with one tagged image (or an index of `parts`)."""

    layout: Path
    tag: str
    manifest: Blob
    config: Blob
    layer: Layer
    #: For an index: the image of each platform (then `config` and `layer` are the first's).
    parts: list[Image] = attrs.field(factory=list, eq=False)

    @property
    def size(self) -> int:
        """Bytes a pull of every platform transfers: manifests, configs and layers."""
        if self.parts:
            return self.manifest.size + sum(part.size for part in self.parts)
        return self.manifest.size + self.config.size + self.layer.blob.size


def canonical_json(value: object) -> bytes:
    """Sorted keys, no spaces: the same value always gives the same bytes, so the same digest."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def rfc3339(epoch: int) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


class _HashingWriter(io.RawIOBase):
    """Feeds what tarfile writes to gzip's stdin while hashing it (the layer's diff_id)."""

    def __init__(self, sink: IO[bytes]) -> None:
        self.sink = sink
        self.digest = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.digest.update(view)
        self.sink.write(view)
        return len(view)


def _blob_path(layout: Path, digest: str) -> Path:
    algorithm, hexdigest = digest.split(":", 1)
    return layout / "blobs" / algorithm / hexdigest


def write_blob(layout: Path, data: bytes, media_type: str) -> Blob:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = _blob_path(layout, digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return Blob(digest, len(data), media_type)


class LayerWriter:
    """A tar stream to add entries to, in order; on a clean exit `layer` is in the layout.

    gzip runs as its own process (`gzip -n`: no name, no time) so it compresses on the second
    core while this process writes the tar.
    """

    def __init__(self, layout: Path) -> None:
        self.blobs = layout / "blobs" / "sha256"
        self.tmp = self.blobs / ".layer.tmp"
        self.layer: Layer | None = None

    def __enter__(self) -> tarfile.TarFile:
        self.blobs.mkdir(parents=True, exist_ok=True)
        self._out = self.tmp.open("wb")
        self._gzip = subprocess.Popen(["gzip", "-n", "-6"], stdin=subprocess.PIPE, stdout=self._out)
        assert self._gzip.stdin is not None
        self._writer = _HashingWriter(self._gzip.stdin)
        self._tar = tarfile.open(fileobj=self._writer, mode="w|", format=tarfile.PAX_FORMAT)
        return self._tar

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        try:
            if exc_type is None:
                self._tar.close()
        finally:
            assert self._gzip.stdin is not None
            self._gzip.stdin.close()
            code = self._gzip.wait()
            self._out.close()
        if exc_type is not None:
            self.tmp.unlink(missing_ok=True)
            return
        if code != 0:
            raise SystemExit(f"gzip failed with exit code {code} while writing {self.tmp}")
        digest = sha256_file(self.tmp)
        blob = Blob(digest, self.tmp.stat().st_size, LAYER_TYPE)
        self.tmp.rename(self.blobs / digest.removeprefix("sha256:"))
        self.layer = Layer(blob, "sha256:" + self._writer.digest.hexdigest())


def normalised(member: tarfile.TarInfo, epoch: int) -> tarfile.TarInfo:
    """A copy with a relative name, mtime clamped to `epoch`, no user names, only xattr records."""
    info = tarfile.TarInfo(member.name.removeprefix("./").rstrip("/"))
    info.type = member.type
    info.mode = member.mode
    info.uid, info.gid = member.uid, member.gid
    info.uname = info.gname = ""
    info.mtime = min(int(member.mtime), epoch)
    info.size = member.size if member.isreg() else 0
    info.linkname = member.linkname
    info.devmajor, info.devminor = member.devmajor, member.devminor
    info.pax_headers = {
        k: v for k, v in member.pax_headers.items() if k.startswith(KEPT_PAX_PREFIX)
    }
    return info


def copy_sorted(
    source: tarfile.TarFile,
    dest: tarfile.TarFile,
    epoch: int,
    keep: Callable[[str], bool],
    replace: dict[str, bytes],
) -> int:
    """Copy `source` into `dest` sorted by name, normalised; return the number of entries.

    `keep(name)` drops entries; `replace` gives new contents for regular files (by name).
    Hard links are re-pointed so the first name of each link group, in sorted order, carries
    the data: a tar reader must see a link's target before the link.
    """
    members: dict[str, tarfile.TarInfo] = {}
    for member in source.getmembers():
        name = member.name.removeprefix("./").rstrip("/")
        if name in ("", ".") or not keep(name):
            continue
        members[name] = member
    data_of: dict[str, str] = {}  # every name of a hard-link group -> the member holding data
    groups: dict[str, list[str]] = {}
    for name, member in members.items():
        if member.islnk():
            target = member.linkname.removeprefix("./")
            data_of[name] = target
            groups.setdefault(target, [target]).append(name)
    first_of = {name: min(group) for group in groups.values() for name in group}
    for name in sorted(members):
        holder = members[data_of.get(name, name)]
        info = normalised(holder, epoch)
        info.name = name
        first = first_of.get(name, name)
        if first != name:
            info.type, info.size, info.linkname = tarfile.LNKTYPE, 0, first
            dest.addfile(info)
        elif name in replace:
            content = replace[name]
            info.type, info.mode, info.size = tarfile.REGTYPE, 0o644, len(content)
            dest.addfile(info, io.BytesIO(content))
        elif holder.isreg():
            info.type = tarfile.REGTYPE
            dest.addfile(info, source.extractfile(holder))
        else:
            dest.addfile(info)
    return len(members)


def add_entries(
    dest: tarfile.TarFile, entries: Iterable[tuple[tarfile.TarInfo, bytes | None]]
) -> None:
    """Add entries made in memory, sorted by name."""
    for info, content in sorted(entries, key=lambda e: e[0].name):
        dest.addfile(info, io.BytesIO(content) if content is not None else None)


def write_image(
    layout: Path, tag: str, layer: Layer, config: ImageConfig, epoch: int, created_by: str
) -> Image:
    """Write config, manifest, index.json and oci-layout next to an already written layer."""
    created = rfc3339(epoch)
    config_json = {
        "architecture": config.architecture,
        "os": "linux",
        "created": created,
        "config": _run_config(config),
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
        "history": [{"created": created, "created_by": created_by}],
    }
    config_blob = write_blob(layout, canonical_json(config_json), CONFIG_TYPE)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": config_blob.descriptor(),
        "layers": [layer.blob.descriptor()],
    }
    manifest_blob = write_blob(layout, canonical_json(manifest), MANIFEST_TYPE)
    _tag_in_layout(layout, tag, manifest_blob)
    (layout / "oci-layout").write_bytes(canonical_json({"imageLayoutVersion": "1.0.0"}))
    return Image(layout, tag, manifest_blob, config_blob, layer)


def _run_config(config: ImageConfig) -> dict[str, object]:
    """The config's `config` object; fields left unset are absent (older images keep their
    digests)."""
    run: dict[str, object] = {
        "Env": list(config.env),
        "Cmd": list(config.cmd),
        "WorkingDir": config.working_dir,
    }
    if config.entrypoint:
        run["Entrypoint"] = list(config.entrypoint)
    if config.exposed_ports:
        run["ExposedPorts"] = {port: {} for port in config.exposed_ports}
    if config.stop_signal:
        run["StopSignal"] = config.stop_signal
    return run


def _tag_in_layout(layout: Path, tag: str, blob: Blob) -> None:
    """Name `blob` as `tag` in the layout's index.json (a layout may hold several images)."""
    index_file = layout / "index.json"
    if index_file.exists():
        index = json.loads(index_file.read_bytes())
    else:
        index = {"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": []}
    index["manifests"].append({**blob.descriptor(), "annotations": {REF_NAME: tag}})
    index_file.write_bytes(canonical_json(index))


def add_platform_index(layout: Path, tag: str, images: Iterable[tuple[Image, str]]) -> Blob:
    """Add to `layout` (which holds the blobs of every image) an image index `tag` naming each
    image's manifest with its platform, `os/arch`: one reference, one image per platform."""
    manifests = []
    for image, platform in images:
        os_name, architecture = platform.split("/")
        entry = {**image.manifest.descriptor()}
        entry["platform"] = {"os": os_name, "architecture": architecture}
        manifests.append(entry)
    body = {"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": manifests}
    index_blob = write_blob(layout, canonical_json(body), INDEX_TYPE)
    _tag_in_layout(layout, tag, index_blob)
    return index_blob


def replace_dir(tmp: Path, final: Path) -> None:
    """Move a finished directory into place, replacing an older one."""
    if final.exists():
        old = final.with_name(final.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, final)
