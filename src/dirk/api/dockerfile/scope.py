"""The variables of a build: build arguments, the automatic platform ARGs, and the per-stage
state (declared ARGs, shell, whether CMD was set) that instructions read and change."""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from dirk.api.dockerfile.parse import Instruction
from dirk.api.dockerfile.words import process_words
from dirk.api.values import Container
from dirk.workers.images.platform import Platform

DEFAULT_SHELL = ("/bin/sh", "-c")


def platform_args(build: str, target: str) -> dict[str, str]:
    """Docker's automatic ARGs: BUILDPLATFORM, TARGETARCH, ... (declare them to use them)."""
    out: dict[str, str] = {}
    for prefix, text in (("BUILD", build), ("TARGET", target)):
        p = Platform.parse(text)
        if p.architecture == "arm64" and p.variant == "v8":
            p = Platform(p.os, p.architecture)  # Docker leaves arm64's default variant out
        out[prefix + "PLATFORM"] = f"{p.os}/{p.architecture}" + (
            f"/{p.variant}" if p.variant else ""
        )
        out[prefix + "OS"] = p.os
        out[prefix + "ARCH"] = p.architecture
        out[prefix + "VARIANT"] = p.variant
    return out


def declared(inst: Instruction, lookup: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """The (name, default or None) pairs of one `ARG` instruction."""
    pairs: list[tuple[str, str | None]] = []
    for word in process_words(inst.value, lookup):
        name, eq, default = word.partition("=")
        if not name:
            raise inst.error(f"invalid ARG {word!r}: expected ARG <name>[=<default>]")
        pairs.append((name, default if eq else None))
    if not pairs:
        raise inst.error("ARG needs a name")
    return pairs


def resolve_args(
    inst: Instruction,
    lookup: Mapping[str, str],
    build_args: Mapping[str, str],
    inherited: Mapping[str, str],
) -> list[tuple[str, str | None]]:
    """Each ARG's value: the build argument, else its default, else the value `inherited`
    gives (a global ARG, an automatic platform ARG), else unset (None)."""
    values: list[tuple[str, str | None]] = []
    scope = dict(lookup)
    for name, default in declared(inst, scope):
        if name in build_args:
            value: str | None = build_args[name]
        elif default is not None:
            value = default
        else:
            value = inherited.get(name)
        if value is not None:
            scope[name] = value
        values.append((name, value))
    return values


@attrs.define
class StageState:
    """What a stage's instructions build up besides the container itself."""

    container: Container
    args: dict[str, str] = attrs.field(factory=dict)
    shell: tuple[str, ...] = DEFAULT_SHELL
    cmd_set: bool = False

    def lookup(self) -> dict[str, str]:
        """The variables instructions expand: declared ARGs, overridden by ENV."""
        return {**self.args, **dict(self.container.env)}

    def run_env(self) -> tuple[tuple[str, str], ...]:
        """The environment of a RUN: the image's ENV plus the declared ARGs it does not set."""
        names = {n for n, _ in self.container.env}
        return (*self.container.env, *((n, v) for n, v in self.args.items() if n not in names))
