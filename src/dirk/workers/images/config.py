"""What a resolved image is: its pinned reference, its runtime configuration and its layers."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs

from dirk.errors import ImageError
from dirk.workers.images.reference import ImageReference


@attrs.frozen
class ImageConfig:
    """The runtime defaults of an image (the "config" object of its config JSON)."""

    env: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    workdir: str = ""
    user: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    exposed_ports: tuple[str, ...] = ()
    #: Docker's "Healthcheck": Test (["CMD", ...], ["CMD-SHELL", cmd] or ["NONE"]), durations in
    #: nanoseconds, Retries; None when the image has none.
    healthcheck: ImageHealthcheck | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> ImageConfig:
        """Tolerates missing keys and JSON nulls, which image builders emit freely."""
        data = data or {}
        return cls(
            env=_strings(data.get("Env")),
            cmd=_strings(data.get("Cmd")),
            entrypoint=_strings(data.get("Entrypoint")),
            workdir=str(data.get("WorkingDir") or ""),
            user=str(data.get("User") or ""),
            labels=tuple(sorted((str(k), str(v)) for k, v in (data.get("Labels") or {}).items())),
            exposed_ports=tuple(sorted(str(p) for p in (data.get("ExposedPorts") or {}))),
            healthcheck=ImageHealthcheck.from_json(data.get("Healthcheck")),
        )


@attrs.frozen
class ImageHealthcheck:
    test: tuple[str, ...]
    interval_ns: int = 0
    timeout_ns: int = 0
    start_period_ns: int = 0
    start_interval_ns: int = 0
    retries: int = 0

    @classmethod
    def from_json(cls, data: Any) -> ImageHealthcheck | None:
        if not isinstance(data, Mapping):
            return None
        test = _strings(data.get("Test"))
        if not test or test[0] == "NONE":
            return None

        def number(key: str) -> int:
            value = data.get(key)
            return value if isinstance(value, int) and value > 0 else 0

        return cls(
            test=test,
            interval_ns=number("Interval"),
            timeout_ns=number("Timeout"),
            start_period_ns=number("StartPeriod"),
            start_interval_ns=number("StartInterval"),
            retries=number("Retries"),
        )


@attrs.frozen
class LayerDescriptor:
    """One layer as the manifest names it: compressed digest, media type, compressed size."""

    digest: str
    media_type: str
    size: int


@attrs.frozen
class ResolvedImage:
    """An image pinned to one platform manifest; everything needed to unpack it, no layers yet."""

    reference: ImageReference
    manifest_digest: str
    config_digest: str
    config: ImageConfig
    layers: tuple[LayerDescriptor, ...]
    platform: str
    #: The uncompressed digests of the layers, from the config (empty if it lists none).
    diff_ids: tuple[str, ...] = ()


def _strings(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)


def json_object(data: bytes, what: str) -> dict[str, Any]:
    """Decode a JSON document that must be an object; `what` names it in the error."""
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ImageError(f"{what} is not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise ImageError(f"{what} is not a JSON object")
    return obj


def parse_config_blob(data: bytes, where: str) -> dict[str, Any]:
    """Decode an image config blob; `where` names it in the error."""
    return json_object(data, f"the image config of {where}")
