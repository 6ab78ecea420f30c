"""Images out: layer blobs + a container's configuration -> config, manifest and (for several
platforms) an index, all as blobs in the store. Blocking: run it in a thread.

The config keeps what the base image's config said (history, volumes, stop signal, ...) and
overrides what a container can change (env, entrypoint, cmd, workdir, user, labels, exposed
ports); history stays the base's, one entry added per layer on top, when the base's layers are
the bottom of the image; otherwise it is one entry per layer. Nothing in it depends on the time
of the build, so the same container gives the same digests.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

import attrs

from dirk.state.blobs import BlobStore
from dirk.workers.images.layers_out import Compression, LayerBlob, LayerBlobs
from dirk.workers.images.manifest import (
    DOCKER_CONFIG,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_MANIFEST,
)
from dirk.workers.images.platform import Platform

MediaTypes = Literal["oci", "docker"]

_LAYER_TYPES: dict[tuple[MediaTypes, Compression], str] = {
    ("oci", "gzip"): "application/vnd.oci.image.layer.v1.tar+gzip",
    ("oci", "zstd"): "application/vnd.oci.image.layer.v1.tar+zstd",
    ("oci", "none"): "application/vnd.oci.image.layer.v1.tar",
    ("docker", "gzip"): "application/vnd.docker.image.rootfs.diff.tar.gzip",
    ("docker", "zstd"): "application/vnd.docker.image.rootfs.diff.tar.zstd",
    ("docker", "none"): "application/vnd.docker.image.rootfs.diff.tar",
}
_TYPES: dict[MediaTypes, tuple[str, str, str]] = {
    "oci": (OCI_CONFIG, OCI_MANIFEST, OCI_INDEX),
    "docker": (DOCKER_CONFIG, DOCKER_MANIFEST, DOCKER_LIST),
}


@attrs.frozen
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: Platform | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest}
        out["size"] = self.size
        if self.platform is not None:
            plat = {"architecture": self.platform.architecture, "os": self.platform.os}
            if self.platform.variant:
                plat["variant"] = self.platform.variant
            out["platform"] = plat
        return out


@attrs.frozen
class ImageSettings:
    """What a container sets in its image's config."""

    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    workdir: str = ""
    user: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    exposed_ports: tuple[str, ...] = ()
    #: The config blob of the image the container started from ("" for scratch).
    base_config: str = ""
    #: The config's Healthcheck object as JSON; "" keeps the base image's.
    healthcheck: str = ""
    #: Annotations of the manifest.
    annotations: tuple[tuple[str, str], ...] = ()


@attrs.frozen
class PlatformImage:
    """One platform's image: its layers (ids, bottom first) and settings."""

    layers: tuple[str, ...]
    platform: str
    settings: ImageSettings


@attrs.frozen
class BuiltManifest:
    manifest: Descriptor  # with the platform
    config: Descriptor
    layers: tuple[Descriptor, ...]
    diff_ids: tuple[str, ...]


@attrs.frozen
class BuiltImage:
    """An image whose every blob is in the store. `root` is the manifest (one platform) or the
    index (several); `index` is the index blob when there is one."""

    root: Descriptor
    manifests: tuple[BuiltManifest, ...]
    media_types: MediaTypes
    index: Descriptor | None = None

    def blobs(self) -> list[Descriptor]:
        """Every layer and config blob, each once, layers first."""
        seen: dict[str, Descriptor] = {}
        for m in self.manifests:
            for d in (*m.layers, m.config):
                seen.setdefault(d.digest, d)
        return list(seen.values())


def layer_media_type(media_types: MediaTypes, compression: Compression) -> str:
    return _LAYER_TYPES[(media_types, compression)]


def build_image(
    images: Sequence[PlatformImage],
    layer_blobs: LayerBlobs,
    *,
    compression: Compression | None,
    media_types: MediaTypes,
    force_index: bool = False,
) -> BuiltImage:
    """Make every blob of the image of `images` (the first is the main platform)."""
    built = tuple(
        _build_one(image, layer_blobs, compression, media_types) for image in _unique(images)
    )
    blobs = layer_blobs.blobs
    if len(built) == 1 and not force_index:
        return BuiltImage(built[0].manifest, built, media_types)
    index_type = _TYPES[media_types][2]
    body = {
        "schemaVersion": 2,
        "mediaType": index_type,
        "manifests": [m.manifest.to_json() for m in built],
    }
    index = _put_json(blobs, body, index_type)
    return BuiltImage(index, built, media_types, index)


def _unique(images: Sequence[PlatformImage]) -> list[PlatformImage]:
    """One image per platform: a variant for the platform of an earlier one is dropped."""
    kept: dict[str, PlatformImage] = {}
    for image in images:
        kept.setdefault(str(Platform.parse(image.platform)), image)
    return list(kept.values())


def _build_one(
    image: PlatformImage,
    layer_blobs: LayerBlobs,
    compression: Compression | None,
    media_types: MediaTypes,
) -> BuiltManifest:
    config_type, manifest_type, _ = _TYPES[media_types]
    layers: list[LayerBlob] = [layer_blobs.get(lid, compression) for lid in _topmost(image.layers)]
    diff_ids = tuple(b.diff_id for b in layers)
    platform = Platform.parse(image.platform)
    config = make_config(image.settings, platform, diff_ids, layer_blobs.blobs)
    config_desc = _put_json(layer_blobs.blobs, config, config_type)
    layer_descs = tuple(
        Descriptor(layer_media_type(media_types, b.compression), b.digest, b.size) for b in layers
    )
    manifest = {
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": config_desc.to_json(),
        "layers": [d.to_json() for d in layer_descs],
    }
    if image.settings.annotations:
        manifest["annotations"] = dict(image.settings.annotations)
    desc = _put_json(layer_blobs.blobs, manifest, manifest_type)
    return BuiltManifest(attrs.evolve(desc, platform=platform), config_desc, layer_descs, diff_ids)


def _topmost(ids: tuple[str, ...]) -> tuple[str, ...]:
    """A layer listed twice counts once, at its upper place (as the snapshotter mounts it)."""
    kept: dict[str, None] = {}
    for layer_id in reversed(ids):
        kept.setdefault(layer_id, None)
    return tuple(reversed(kept))


def make_config(
    settings: ImageSettings, platform: Platform, diff_ids: tuple[str, ...], blobs: BlobStore
) -> dict[str, Any]:
    """The image config JSON: the base's, with the container's settings and our layers."""
    base = _base_config(settings.base_config, blobs)
    runtime = dict(base.get("config") or {}) if isinstance(base.get("config"), dict) else {}
    for key, value in (
        ("Env", list(settings.env)),
        ("Entrypoint", list(settings.entrypoint)),
        ("Cmd", list(settings.cmd)),
        ("WorkingDir", settings.workdir),
        ("User", settings.user),
        ("Labels", dict(settings.labels)),
        ("ExposedPorts", {p: {} for p in settings.exposed_ports}),
    ):
        if value:
            runtime[key] = value
        else:
            runtime.pop(key, None)
    if settings.healthcheck:
        runtime["Healthcheck"] = json.loads(settings.healthcheck)
    config: dict[str, Any] = {}
    if isinstance(base.get("created"), str):
        config["created"] = base["created"]
    for key in ("author",):
        if isinstance(base.get(key), str):
            config[key] = base[key]
    config["architecture"] = platform.architecture
    config["os"] = platform.os
    if platform.variant and platform.architecture != "amd64":
        config["variant"] = platform.variant
    config["config"] = runtime
    config["rootfs"] = {"type": "layers", "diff_ids": list(diff_ids)}
    config["history"] = _history(base, diff_ids)
    return config


def _base_config(digest: str, blobs: BlobStore) -> dict[str, Any]:
    if not digest or not blobs.has(digest):
        return {}
    try:
        data = json.loads(blobs.get_bytes(digest))
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _history(base: dict[str, Any], diff_ids: tuple[str, ...]) -> list[dict[str, Any]]:
    """The base's history when its layers are the bottom of ours, plus one entry per layer on
    top; else one entry per layer."""
    rootfs = base.get("rootfs") if isinstance(base.get("rootfs"), dict) else {}
    base_ids = tuple(rootfs.get("diff_ids") or ()) if isinstance(rootfs, dict) else ()
    history = base.get("history")
    if (
        base_ids
        and isinstance(history, list)
        and diff_ids[: len(base_ids)] == base_ids
        and sum(1 for h in history if isinstance(h, dict) and not h.get("empty_layer"))
        == len(base_ids)
    ):
        kept = [dict(h) for h in history if isinstance(h, dict)]
        extra = len(diff_ids) - len(base_ids)
    else:
        kept, extra = [], len(diff_ids)
    kept.extend({"created_by": "dirk", "comment": "a dirk pipeline step"} for _ in range(extra))
    return kept


def _put_json(blobs: BlobStore, body: dict[str, Any], media_type: str) -> Descriptor:
    data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    digest = blobs.put_bytes(data)
    return Descriptor(media_type, digest, len(data))
