"""Platforms ("linux/amd64", "linux/arm64/v8") and how an index entry is matched against one.

Both sides are normalised the way containerd does it (aarch64 = arm64, arm64 = arm64/v8, arm =
arm/v7), so "linux/arm64" finds an entry that says "arm64/v8" and the other way round.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from dirk.errors import InvalidArgumentError

_ARCH_ALIASES = {
    "x86_64": "amd64",
    "x86-64": "amd64",
    "aarch64": "arm64",
    "i386": "386",
    "i686": "386",
    "armhf": "arm",
    "armel": "arm",
}
_DEFAULT_VARIANT = {"arm64": "v8", "arm": "v7"}


@attrs.frozen
class Platform:
    os: str
    architecture: str
    variant: str = ""

    @classmethod
    def parse(cls, text: str) -> Platform:
        parts = text.strip().lower().split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise InvalidArgumentError(
                f"invalid platform {text!r}: expected os/arch[/variant], e.g. linux/amd64 or "
                "linux/arm64/v8"
            )
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else "").normalized()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Platform:
        """From an index entry's "platform" object or an image config's os/architecture."""
        return cls(
            str(data.get("os") or "").lower(),
            str(data.get("architecture") or "").lower(),
            str(data.get("variant") or "").lower(),
        ).normalized()

    def normalized(self) -> Platform:
        arch = _ARCH_ALIASES.get(self.architecture, self.architecture)
        variant = self.variant
        if self.architecture == "armel" and not variant:
            variant = "v6"
        if arch == "arm64" and variant in ("8", ""):
            variant = "v8"
        elif arch == "arm" and not variant:
            variant = _DEFAULT_VARIANT["arm"]
        elif variant.isdigit():
            variant = f"v{variant}"
        return Platform(self.os, arch, variant)

    def matches(self, other: Platform) -> bool:
        """Does an image built for `other` satisfy a request for `self`?"""
        return (
            self.os == other.os
            and self.architecture == other.architecture
            and (
                self.variant == other.variant
                or (not self.variant and not _DEFAULT_VARIANT.get(self.architecture))
            )
        )

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)
