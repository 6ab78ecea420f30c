"""Image tarballs in and out: the OCI image layout as one tar. Blocking: run it in a thread.

Out: `oci-layout`, `index.json` and `blobs/sha256/<hex>`; with Docker media types also
`manifest.json` (what `docker load` reads), naming the same blobs. Entries are sorted, owned by
root, dated 0: the same image gives the same tarball (an export copies it to the host through
`snapshots.hostexport`, like every export).

In: an OCI layout tar, or a `docker save` tar (config and layer tars by path: its manifest
is made from them, see `_docker_archive_manifest`); every blob is checked against its digest as
it goes into the blob store, so what an import leaves behind is always valid.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import IO, Any

import attrs

from dirk.errors import ImageError, PlatformNotFoundError
from dirk.state.blobs import BlobStore
from dirk.workers.images.config import ImageConfig, ResolvedImage, json_object
from dirk.workers.images.image_out import BuiltImage, Descriptor
from dirk.workers.images.manifest import (
    DOCKER_CONFIG,
    DOCKER_MANIFEST,
    INDEX_TYPES,
    OCI_INDEX,
    media_type_of,
    parse_index,
    parse_manifest,
)
from dirk.workers.images.platform import Platform
from dirk.workers.images.reference import ImageReference
from dirk.workers.images.store import IMPORTED

OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
REF_NAME = "org.opencontainers.image.ref.name"
#: The media type of an uncompressed layer tar (what `docker save` holds).
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
_MAX_JSON = 16 * 1024 * 1024


def write_image_tar(
    image: BuiltImage,
    blobs: BlobStore,
    out: IO[bytes],
    repo_tags: tuple[str, ...] = (),
    docker_manifest: bool = False,
) -> None:
    """Write `image` as an OCI layout tar, plus `manifest.json` (naming `repo_tags`) for
    Docker media types or when `docker_manifest` asks (a load into a Docker daemon)."""
    entries: dict[str, tuple[bytes | None, Path | None, int]] = {}
    entries["oci-layout"] = (OCI_LAYOUT, None, len(OCI_LAYOUT))
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [image.root.to_json()],
    }
    index_data = _json(index)
    entries["index.json"] = (index_data, None, len(index_data))
    descs: list[Descriptor] = [*image.blobs(), *(m.manifest for m in image.manifests)]
    if image.index is not None:
        descs.append(image.index)
    for desc in descs:
        path = blobs.path(desc.digest)
        entries["blobs/sha256/" + desc.digest.removeprefix("sha256:")] = (None, path, desc.size)
    if image.media_types == "docker" or docker_manifest:
        main = image.manifests[0]
        docker = [
            {
                "Config": _blob_name(main.config.digest),
                "RepoTags": list(repo_tags),
                "Layers": [_blob_name(d.digest) for d in main.layers],
            }
        ]
        data = _json(docker)
        entries["manifest.json"] = (data, None, len(data))
    with tarfile.TarFile(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for dirname in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(dirname)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            archive.addfile(info)
        for name in sorted(entries):
            content, source, size = entries[name]
            info = tarfile.TarInfo(name)
            info.mode = 0o644
            info.size = size
            if content is not None:
                archive.addfile(info, _BytesReader(content))
            else:
                assert source is not None
                with open(source, "rb") as f:
                    archive.addfile(info, f)


def _blob_name(digest: str) -> str:
    return "blobs/sha256/" + digest.removeprefix("sha256:")


def _json(body: object) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._pos = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else self._pos + size
        chunk = self._data[self._pos : end].tobytes()
        self._pos += len(chunk)
        return chunk


# --- in ------------------------------------------------------------------------------------------


@attrs.frozen
class ImportedImage:
    """What an image tarball holds for one platform, every blob of it now in the store."""

    resolved: ResolvedImage
    config_json: dict[str, Any]


def import_image_tar(
    path: Path, blobs: BlobStore, platform: str, tag: str = "", where: str = "the tarball"
) -> ImportedImage:
    """Copy the blobs of the image in the tar at `path` into the store and pick the manifest
    for `platform` (or the only one there is). `tag` picks among several tagged images."""
    with tarfile.open(path, mode="r:") as archive:
        members = {_clean(m.name): m for m in archive.getmembers() if m.isreg()}
        names = set(members)

        def read_json(name: str) -> Any:
            member = members.get(name)
            if member is None:
                raise ImageError(f"{where} has no {name}")
            if member.size > _MAX_JSON:
                raise ImageError(f"{where}: {name} is larger than {_MAX_JSON} bytes")
            f = archive.extractfile(member)
            assert f is not None
            try:
                return json.loads(f.read())
            except ValueError as exc:
                raise ImageError(f"{where}: {name} is not valid JSON ({exc})") from None

        def blob(digest: str) -> bytes:
            store_blob(digest)
            return blobs.get_bytes(digest)

        def store_blob(digest: str) -> None:
            if blobs.has(digest):
                return
            name = _blob_name(digest)
            member = members.get(name)
            if member is None:
                raise ImageError(f"{where} has no blob {digest} ({name}); it is incomplete")
            f = archive.extractfile(member)
            assert f is not None
            with blobs.writer(digest) as w:
                while chunk := f.read(1024 * 1024):
                    w.write(chunk)
                w.commit()

        if "index.json" in names:
            manifest_digest = _pick_from_index(read_json("index.json"), blob, platform, tag, where)
        elif "manifest.json" in names:
            manifest_digest = _docker_archive_manifest(
                read_json("manifest.json"), where, blobs, members, archive
            )
        else:
            raise ImageError(
                f"{where} is not an image tarball: it has neither index.json (OCI layout) nor "
                "manifest.json (docker save)"
            )
        body = blob(manifest_digest)
        _, obj = media_type_of(body, None, where)
        manifest = parse_manifest(obj, where)
        config_json = json_object(blob(manifest.config_digest), f"the image config in {where}")
        for layer in manifest.layers:
            store_blob(layer.digest)
    declared = Platform.from_json(config_json)
    plat = str(declared) if declared.os and declared.architecture else platform
    rootfs = config_json.get("rootfs")
    ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    diff_ids = tuple(str(d) for d in ids) if isinstance(ids, list) else ()
    if len(diff_ids) != len(manifest.layers):
        diff_ids = ()
    resolved = ResolvedImage(
        reference=ImageReference(IMPORTED, "tarball", None, manifest_digest),
        manifest_digest=manifest_digest,
        config_digest=manifest.config_digest,
        config=ImageConfig.from_json(config_json.get("config")),
        layers=manifest.layers,
        platform=plat,
        diff_ids=diff_ids,
    )
    return ImportedImage(resolved, config_json)


def _docker_archive_manifest(
    entries: Any,
    where: str,
    blobs: BlobStore,
    members: dict[str, tarfile.TarInfo],
    archive: tarfile.TarFile,
) -> str:
    """The digest of a manifest made for the first image of a `docker save` tarball (config
    file and uncompressed layer tars, named by path): its config and layers go into the store
    as blobs under their digests (the config's is the image ID, each layer's its diff_id), and
    the manifest is a Docker v2 manifest of them, the same for the same image."""
    if not isinstance(entries, list) or not entries or not isinstance(entries[0], dict):
        raise ImageError(f"{where}: manifest.json lists no image")
    entry = entries[0]
    config_name, layer_names = entry.get("Config"), entry.get("Layers")
    if not isinstance(config_name, str) or not isinstance(layer_names, list):
        raise ImageError(f"{where}: manifest.json has no Config and Layers")

    def store(name: str) -> tuple[str, int]:
        member = members.get(_clean(name))
        if member is None:
            raise ImageError(f"{where} has no {name}; it is incomplete")
        f = archive.extractfile(member)
        assert f is not None
        with blobs.writer(None) as w:
            while chunk := f.read(1024 * 1024):
                w.write(chunk)
            digest = w.commit()
        return digest, member.size

    config_digest, config_size = store(config_name)
    layers = [store(str(name)) for name in layer_names]
    manifest = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "digest": config_digest, "size": config_size},
        "layers": [
            {"mediaType": DOCKER_LAYER, "digest": digest, "size": size} for digest, size in layers
        ],
    }
    return blobs.put_bytes(_json(manifest))


def _clean(name: str) -> str:
    return "/".join(p for p in name.split("/") if p and p != ".")


def _pick_from_index(index: Any, blob: Any, platform: str, tag: str, where: str) -> str:
    """The digest of the platform manifest the layout's index.json leads to."""
    if not isinstance(index, dict):
        raise ImageError(f"{where}: index.json is not a JSON object")
    entries = index.get("manifests")
    if not isinstance(entries, list) or not entries:
        raise ImageError(f"{where}: index.json lists no image")
    if tag:
        tagged = [
            e
            for e in entries
            if isinstance(e, dict)
            and tag in ((e.get("annotations") or {}).get(REF_NAME, ""), _short_tag(e))
        ]
        if not tagged:
            raise ImageError(f"{where} has no image tagged {tag!r}")
        entries = tagged
    wanted = Platform.parse(platform)
    for _ in range(3):
        parsed = parse_index({"manifests": entries}, where)
        if len(parsed.entries) == 1 and parsed.entries[0].media_type not in INDEX_TYPES:
            return parsed.entries[0].digest
        manifests = [e for e in parsed.entries if e.media_type not in INDEX_TYPES]
        if manifests and all(e.platform is not None for e in manifests):
            try:
                return parsed.select(wanted, where).digest
            except PlatformNotFoundError:
                if len(parsed.entries) == 1:
                    return parsed.entries[0].digest
                raise
        nested = [e for e in parsed.entries if e.media_type in INDEX_TYPES]
        if not nested:
            return parsed.entries[0].digest
        body = blob(nested[0].digest)
        _, obj = media_type_of(body, None, where)
        entries = obj.get("manifests") or []
    raise ImageError(f"{where}: image indexes are nested too deeply")


def _short_tag(entry: dict[str, Any]) -> str:
    name = str((entry.get("annotations") or {}).get(REF_NAME, ""))
    return name.rsplit(":", 1)[-1] if ":" in name else ""
