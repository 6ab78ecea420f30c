"""The cache policy: how much disk the cache may take, and for how long unused entries stay.

Sizes are written as Dagger writes them: bytes with a unit ("500MB", "20GiB", "1.5TB") or a
share of the disk that holds the state ("75%"). Durations as "90s", "30m", "48h", "7d" (or
plain seconds). The defaults are Dagger's: the cache takes at most 75% of its disk and leaves at
least 20% of it free. No space is reserved by default (a reserved size wins over the free
space: with one, a full disk may keep a cache smaller than it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs

from dirk.errors import CachePolicyError

DEFAULT_MAX_USED = "75%"
DEFAULT_MIN_FREE = "20%"
DEFAULT_RESERVED = "0"
#: Seconds between two background collections.
DEFAULT_INTERVAL = 300.0

#: The environment variables an engine reads its policy from (one per `CachePolicy` field).
ENV_MAX_USED = "DIRK_GC_MAX_USED_SPACE"
ENV_MIN_FREE = "DIRK_GC_MIN_FREE_SPACE"
ENV_RESERVED = "DIRK_GC_RESERVED_SPACE"
ENV_TARGET = "DIRK_GC_TARGET_SPACE"
ENV_KEEP = "DIRK_GC_KEEP_DURATION"
#: Seconds (or a duration) between background collections; "0" turns them off.
ENV_INTERVAL = "DIRK_GC_INTERVAL"

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*|%)\s*")
_DURATION = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]?)\s*")


@attrs.frozen
class CachePolicy:
    """Limits in bytes and seconds; 0 means no limit of that kind.

    A collection starts when the cache takes more than `max_used_space` or the disk has less
    than `min_free_space` free; it then evicts the least recently used entries until the cache
    is down to `target_space` (or `max_used_space`) and the disk has `min_free_space` free,
    but never below `reserved_space`. Entries unused for longer than `keep_duration` go at
    every collection."""

    max_used_space: int = 0
    min_free_space: int = 0
    reserved_space: int = 0
    target_space: int = 0
    keep_duration: float = 0.0

    @classmethod
    def default(cls, disk_total: int) -> CachePolicy:
        return cls(
            max_used_space=parse_space(DEFAULT_MAX_USED, disk_total, "max used space"),
            min_free_space=parse_space(DEFAULT_MIN_FREE, disk_total, "min free space"),
            reserved_space=parse_space(DEFAULT_RESERVED, disk_total, "reserved space"),
        )

    @classmethod
    def from_environment(cls, env: Mapping[str, str], disk_total: int) -> CachePolicy:
        """The default policy with what the `DIRK_GC_*` variables set instead."""
        policy = cls.default(disk_total)
        return policy.overridden(
            max_used_space=env.get(ENV_MAX_USED, ""),
            min_free_space=env.get(ENV_MIN_FREE, ""),
            reserved_space=env.get(ENV_RESERVED, ""),
            target_space=env.get(ENV_TARGET, ""),
            keep_duration=env.get(ENV_KEEP, ""),
            disk_total=disk_total,
            names=_ENV_NAMES,
        )

    def overridden(
        self,
        *,
        disk_total: int,
        max_used_space: str = "",
        min_free_space: str = "",
        reserved_space: str = "",
        target_space: str = "",
        keep_duration: str = "",
        names: Mapping[str, str] | None = None,
    ) -> CachePolicy:
        """This policy with each non-empty value given replacing its field (as written by a
        user: "20GB", "80%", "48h"); `names` says what to call each setting in an error."""
        called = names or _ARG_NAMES
        changes: dict[str, Any] = {}
        for field, text in (
            ("max_used_space", max_used_space),
            ("min_free_space", min_free_space),
            ("reserved_space", reserved_space),
            ("target_space", target_space),
        ):
            if text.strip():
                changes[field] = parse_space(text, disk_total, called[field])
        if keep_duration.strip():
            changes["keep_duration"] = parse_duration(keep_duration, called["keep_duration"])
        return attrs.evolve(self, **changes)

    def goal(self) -> int:
        """The size a collection triggered by `max_used_space` brings the cache down to."""
        if self.target_space and self.max_used_space:
            return min(self.target_space, self.max_used_space)
        return self.target_space or self.max_used_space


_ARG_NAMES = {
    "max_used_space": "maxUsedSpace",
    "min_free_space": "minFreeSpace",
    "reserved_space": "reservedSpace",
    "target_space": "targetSpace",
    "keep_duration": "keepDuration",
}
_ENV_NAMES = {
    "max_used_space": ENV_MAX_USED,
    "min_free_space": ENV_MIN_FREE,
    "reserved_space": ENV_RESERVED,
    "target_space": ENV_TARGET,
    "keep_duration": ENV_KEEP,
}


def parse_space(text: str, disk_total: int, what: str) -> int:
    """Bytes from "500MB", "20GiB", "1e9"-free forms like "1000000", or "75%" of `disk_total`."""
    match = _SIZE.fullmatch(text)
    if match is None:
        raise CachePolicyError(
            f"{what} {text!r} is not a size: write bytes with a unit (500MB, 20GiB, 1TB) or a "
            "share of the disk (75%)"
        )
    number, unit = float(match.group(1)), match.group(2).lower()
    if unit == "%":
        if number > 100:
            raise CachePolicyError(f"{what} {text!r} is more than the whole disk (100%)")
        return int(disk_total * number // 100)  # a share never exceeds it
    factor = _UNITS.get(unit)
    if factor is None:
        raise CachePolicyError(
            f"{what} {text!r} has an unknown unit {match.group(2)!r}: use B, KB, MB, GB, TB "
            "(powers of 1000), KiB, MiB, GiB, TiB (powers of 1024) or %"
        )
    return round(number * factor)


def parse_duration(text: str, what: str) -> float:
    """Seconds from "90s", "30m", "48h", "7d", "2w" or a plain number of seconds."""
    match = _DURATION.fullmatch(text)
    unit = match.group(2).lower() if match is not None else ""
    if match is None or unit not in _SECONDS:
        raise CachePolicyError(
            f"{what} {text!r} is not a duration: write a number with s, m, h, d or w "
            "(90s, 30m, 48h, 7d)"
        )
    return float(match.group(1)) * _SECONDS[unit]


def background_interval(env: Mapping[str, str]) -> float:
    """Seconds between background collections (0: none)."""
    text = env.get(ENV_INTERVAL, "")
    return parse_duration(text, ENV_INTERVAL) if text.strip() else DEFAULT_INTERVAL


def human_size(size: float) -> str:
    """ "1.5 GB", "340 kB", "12 B": powers of 1000, as `du -h --si` and Dagger print them."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(size) < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def human_duration(seconds: float) -> str:
    """ "45s", "12m", "5h", "3d"."""
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= length:
            return f"{seconds / length:.0f}{unit}"
    return f"{seconds:.0f}s"
