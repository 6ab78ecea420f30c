"""Manifests and indexes (Docker schema 2 and OCI): media types, parsing, platform selection."""

from __future__ import annotations

from typing import Any

import attrs

from dirk.errors import ImageError, PlatformNotFoundError, UnsupportedMediaTypeError
from dirk.workers.images.config import LayerDescriptor, json_object
from dirk.workers.images.platform import Platform

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)

INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
CONFIG_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})
#: Every layer media type we can unpack, and how it is compressed.
LAYER_TYPES = {
    "application/vnd.oci.image.layer.v1.tar": "none",
    "application/vnd.oci.image.layer.v1.tar+gzip": "gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd": "zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar": "none",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": "gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd": "zstd",
    "application/vnd.docker.image.rootfs.diff.tar": "none",
    "application/vnd.docker.image.rootfs.diff.tar.gzip": "gzip",
    "application/vnd.docker.image.rootfs.diff.tar.zstd": "zstd",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": "gzip",
}

#: What we send as Accept for manifests: every type we understand, indexes first.
MANIFEST_ACCEPT = ", ".join([OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST])
#: Manifests larger than this are refused (the distribution registry's own limit is 4 MiB).
MAX_MANIFEST_BYTES = 4 * 1024 * 1024


@attrs.frozen
class IndexEntry:
    digest: str
    media_type: str
    platform: Platform | None


@attrs.frozen
class Index:
    entries: tuple[IndexEntry, ...]

    def select(self, wanted: Platform, where: str) -> IndexEntry:
        """The entry for `wanted` (an exact variant beats a variant-less request's other picks)."""
        candidates = [
            e for e in self.entries if e.platform is not None and wanted.matches(e.platform)
        ]
        if candidates:
            exact = [e for e in candidates if e.platform == wanted]
            return (exact or candidates)[0]
        available = sorted(
            {str(e.platform) for e in self.entries if e.platform and e.platform.os != "unknown"}
        )
        raise PlatformNotFoundError(
            f"{where} has no image for platform {wanted}; available platforms: "
            f"{', '.join(available) or 'none'}. Ask for one of those (e.g. platform="
            f"{available[0] if available else 'linux/amd64'!r})"
        )


@attrs.frozen
class Manifest:
    config_digest: str
    config_media_type: str
    config_size: int
    layers: tuple[LayerDescriptor, ...]


def media_type_of(body: bytes, content_type: str | None, where: str) -> tuple[str, dict[str, Any]]:
    """Decode a manifest body; its type comes from "mediaType", then Content-Type, then shape."""
    obj = json_object(body, f"the manifest of {where}")
    media_type = obj.get("mediaType")
    if not isinstance(media_type, str) or not media_type:
        media_type = (content_type or "").split(";")[0].strip()
    if media_type not in INDEX_TYPES | MANIFEST_TYPES:
        if media_type in DOCKER_SCHEMA1 or obj.get("schemaVersion") == 1:
            raise UnsupportedMediaTypeError(
                f"{where} uses the deprecated Docker schema 1 manifest format, which dirk does "
                "not support; re-push the image with a current Docker or skopeo"
            )
        if "manifests" in obj:
            media_type = OCI_INDEX
        elif "layers" in obj and "config" in obj:
            media_type = OCI_MANIFEST
        else:
            raise UnsupportedMediaTypeError(
                f"{where} has a manifest of media type {media_type or 'unknown'!r}, which is not "
                "a container image; expected an OCI or Docker schema 2 image or index"
            )
    return media_type, obj


def parse_index(obj: dict[str, Any], where: str) -> Index:
    entries = []
    for item in _list(obj.get("manifests"), "manifests", where):
        plat = item.get("platform")
        entries.append(
            IndexEntry(
                digest=_str(item, "digest", where),
                media_type=str(item.get("mediaType") or OCI_MANIFEST),
                platform=Platform.from_json(plat) if isinstance(plat, dict) else None,
            )
        )
    return Index(tuple(entries))


def parse_manifest(obj: dict[str, Any], where: str) -> Manifest:
    config = obj.get("config")
    if not isinstance(config, dict):
        raise ImageError(f"the manifest of {where} has no config descriptor")
    config_type = str(config.get("mediaType") or OCI_CONFIG)
    if config_type not in CONFIG_TYPES:
        raise UnsupportedMediaTypeError(
            f"{where} is not a container image: its config has media type {config_type!r} "
            f"(expected {OCI_CONFIG} or {DOCKER_CONFIG})"
        )
    layers = []
    for item in _list(obj.get("layers"), "layers", where):
        media_type = str(item.get("mediaType") or "")
        if media_type not in LAYER_TYPES:
            raise UnsupportedMediaTypeError(
                f"{where} has a layer of media type {media_type!r}, which dirk cannot unpack; "
                "supported: tar, tar+gzip and tar+zstd layers (OCI or Docker media types)"
            )
        layers.append(
            LayerDescriptor(
                digest=_str(item, "digest", where), media_type=media_type, size=_size(item, where)
            )
        )
    return Manifest(
        config_digest=_str(config, "digest", where),
        config_media_type=config_type,
        config_size=_size(config, where),
        layers=tuple(layers),
    )


def _list(value: Any, key: str, where: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ImageError(f"the manifest of {where} has a malformed {key!r} list")
    return value


def _str(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value.startswith("sha256:") or len(value) != 71:
        raise ImageError(
            f"the manifest of {where} has a descriptor with {key} {value!r}; dirk needs "
            "sha256 digests"
        )
    return value


def _size(item: dict[str, Any], where: str) -> int:
    value = item.get("size")
    if not isinstance(value, int) or value < 0:
        raise ImageError(f"the manifest of {where} has a descriptor without a valid size")
    return value
