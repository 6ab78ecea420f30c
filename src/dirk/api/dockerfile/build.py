"""Stages -> `Container` values: each instruction becomes the same operations the SDK's
container calls make (`from`, `withExec`, `withDirectory`, `withEnvVariable`, ...), so a
Dockerfile build and the equivalent SDK pipeline share one cache.

Only the target stage and the stages it needs (`FROM <stage>`, `--from=<stage>`) are planned,
and planning runs nothing but the reads it must make: the Dockerfile, the .dockerignore, and
the sources a COPY from the context names. Everything else runs when the container is used.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs

from dirk.api.container import from_image
from dirk.api.container_ops import default_platform, parse_port, set_pair, write_at
from dirk.api.context import RequestContext
from dirk.api.directory import SCRATCH, with_new_directory
from dirk.api.dockerfile import copy, run
from dirk.api.dockerfile.ignore import exclude_patterns
from dirk.api.dockerfile.parse import Dockerfile, Instruction, Stage, json_form, parse, parse_flags
from dirk.api.dockerfile.scope import StageState, platform_args, resolve_args
from dirk.api.dockerfile.words import process_word, process_words
from dirk.api.paths import container_path, inside
from dirk.api.values import Container, Directory, HealthcheckConfig, Secret, Socket
from dirk.errors import DockerfileError, InvalidArgumentError
from dirk.solver.ops import Copy, Ref, Scratch
from dirk.workers.images.platform import Platform

_DURATION = re.compile(r"(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+")


@attrs.frozen
class BuildOptions:
    dockerfile: str = "Dockerfile"
    platform: str = ""
    build_args: Mapping[str, str] = attrs.field(factory=dict)
    target: str = ""
    #: The build's secrets by name; None when secret mounts cannot be had.
    secrets: Mapping[str, Secret] | None = None
    #: The SSH agent socket `RUN --mount=type=ssh` forwards; None when not given.
    ssh: Socket | None = None


async def docker_build(ctx: RequestContext, context: Directory, opts: BuildOptions) -> Container:
    """The container the target stage of the Dockerfile in `context` builds."""
    path = inside(context.subdir, opts.dockerfile)
    info = await ctx.solver.stat(ctx.job, context.ref, path)
    if info is None or info.kind == "dir":
        raise DockerfileError(
            f"there is no Dockerfile {opts.dockerfile!r} in the build context: pass "
            "dockerfile: with its path relative to the directory"
        )
    text = (await ctx.solver.read_file(ctx.job, context.ref, path)).decode(
        "utf-8", errors="replace"
    )
    dockerfile = parse(text)
    filtered = await _ignored(ctx, context, path)
    platform = str(Platform.parse(opts.platform)) if opts.platform else default_platform()
    builder = _Builder(ctx, dockerfile, filtered, opts, platform)
    if opts.target:
        stage = dockerfile.stage(opts.target)
        if stage is None or (not stage.name and not opts.target.isdigit()):
            names = ", ".join(s.name for s in dockerfile.stages if s.name) or "none"
            raise DockerfileError(
                f"target stage {opts.target!r} is not in the Dockerfile (its named stages: {names})"
            )
    else:
        stage = dockerfile.stages[-1]
    built = await builder.stage(stage)
    return attrs.evolve(built, last_exec=None)


async def _ignored(ctx: RequestContext, context: Directory, dockerfile_path: str) -> Directory:
    """The context without what its .dockerignore (or `<Dockerfile>.dockerignore`) excludes."""
    for candidate in (dockerfile_path + ".dockerignore", inside(context.subdir, ".dockerignore")):
        info = await ctx.solver.stat(ctx.job, context.ref, candidate)
        if info is not None and info.kind != "dir":
            data = await ctx.solver.read_file(ctx.job, context.ref, candidate)
            patterns = exclude_patterns(data.decode("utf-8", errors="replace"))
            if not patterns:
                return context
            op = Copy(Ref(Scratch()), "/", context.ref, context.subdir, exclude=patterns)
            return Directory(Ref(op), "/")
    return context


class _Builder:
    def __init__(
        self,
        ctx: RequestContext,
        dockerfile: Dockerfile,
        context: Directory,
        opts: BuildOptions,
        platform: str,
    ) -> None:
        self.ctx = ctx
        self.dockerfile = dockerfile
        self.context = context
        self.opts = opts
        self.platform = platform
        self.auto = platform_args(default_platform(), platform)
        self.meta: dict[str, str] = {}
        self.global_values: dict[str, str] = {}
        for inst in dockerfile.global_args:
            with _at(inst):
                for name, value in resolve_args(
                    inst, {**self.auto, **self.meta}, opts.build_args, {}
                ):
                    if value is not None:
                        self.meta[name] = self.global_values[name] = value
        self._stages: dict[int, Container] = {}
        self._images: dict[str, Container] = {}
        self._building: set[int] = set()

    async def stage(self, stage: Stage) -> Container:
        known = self._stages.get(stage.index)
        if known is not None:
            return known
        if stage.index in self._building:
            raise stage.start.error(f"{stage.describe()} depends on itself")
        self._building.add(stage.index)
        try:
            state = StageState(await self._from(stage))
            for inst in stage.instructions:
                with _at(inst):
                    state = await self._instruction(stage, state, inst)
        finally:
            self._building.discard(stage.index)
        self._stages[stage.index] = state.container
        return state.container

    async def _from(self, stage: Stage) -> Container:
        lookup = {**self.auto, **self.meta}
        with _at(stage.start):
            base = process_word(stage.base, lookup)
            platform = self.platform
            if stage.platform:
                platform = str(Platform.parse(process_word(stage.platform, lookup)))
            if base.lower() == "scratch":
                return Container(rootfs=SCRATCH, platform=platform)
            earlier = self.dockerfile.stage(base)
            if earlier is not None and earlier.index < stage.index and not base.isdigit():
                return await self.stage(earlier)
            if not base:
                raise stage.start.error(f"the image {stage.base!r} expands to nothing")
            return await from_image(self.ctx, Container(rootfs=SCRATCH, platform=platform), base)

    async def source_root(self, origin: str | None, current: Stage) -> Directory:
        """The root filesystem a `--from` names: a stage, an image, or (None) the context."""
        if origin is None:
            return self.context
        stage = self.dockerfile.stage(origin)
        if stage is not None and stage.index != current.index:
            return (await self.stage(stage)).rootfs
        image = self._images.get(origin)
        if image is None:
            scratch = Container(rootfs=SCRATCH, platform=self.platform)
            image = self._images[origin] = await from_image(self.ctx, scratch, origin)
        return image.rootfs

    async def _instruction(self, stage: Stage, state: StageState, inst: Instruction) -> StageState:
        async def roots(origin: str | None) -> Directory:
            return await self.source_root(origin, stage)

        c = state.container
        lookup = state.lookup()
        name = inst.name
        if name == "RUN":
            return await run.run(inst, state, roots, self.opts.secrets, self.opts.ssh)
        if name in ("COPY", "ADD"):
            return await copy.copy(self.ctx, inst, state, roots)
        if name == "ARG":
            inherited = {**self.auto, **self.global_values}
            for arg, value in resolve_args(inst, lookup, self.opts.build_args, inherited):
                if value is not None:
                    state.args[arg] = value
            return state
        if name == "ENV":
            return attrs.evolve(state, container=attrs.evolve(c, env=_env(inst, c.env, lookup)))
        if name == "LABEL":
            labels = c.labels
            for key, value in _pairs(inst, lookup):
                labels = set_pair(labels, key, value)
            return _with(state, labels=labels)
        if name == "WORKDIR":
            path = container_path(c.workdir, process_word(inst.value, lookup))
            made = write_at(c, path, lambda d, rel: with_new_directory(d, rel))
            return attrs.evolve(state, container=attrs.evolve(made, workdir=path))
        if name == "USER":
            return _with(state, user=process_word(inst.value, lookup))
        if name in ("CMD", "ENTRYPOINT"):
            args = json_form(inst.value) or [*state.shell, inst.value]
            if name == "CMD":
                return attrs.evolve(_with(state, default_args=tuple(args)), cmd_set=True)
            default_args = c.default_args if state.cmd_set else ()
            return _with(state, entrypoint=tuple(args), default_args=default_args)
        if name == "SHELL":
            shell = json_form(inst.value)
            if not shell:
                raise inst.error('SHELL takes the JSON form, e.g. SHELL ["/bin/bash", "-c"]')
            return attrs.evolve(state, shell=tuple(shell))
        if name == "EXPOSE":
            ports = list(c.exposed_ports)
            for port in _ports(inst, lookup):
                if port not in ports:
                    ports.append(port)
            return _with(state, exposed_ports=tuple(ports))
        if name == "HEALTHCHECK":
            return _with(state, healthcheck=_healthcheck(inst, state))
        if name == "STOPSIGNAL":
            return _with(state, stop_signal=process_word(inst.value, lookup))
        if name == "VOLUME":
            volumes = json_form(inst.value) or process_words(inst.value, lookup)
            return _with(state, volumes=(*c.volumes, *(v for v in volumes if v not in c.volumes)))
        return state  # MAINTAINER: deprecated, nothing to build


def _with(state: StageState, **changes: Any) -> StageState:
    return attrs.evolve(state, container=attrs.evolve(state.container, **changes))


class _at:
    """Errors inside an instruction name its line (those that do not already)."""

    def __init__(self, inst: Instruction) -> None:
        self.inst = inst

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, InvalidArgumentError) and not str(exc).startswith("Dockerfile line"):
            raise self.inst.error(str(exc)) from exc


def _pairs(inst: Instruction, lookup: Mapping[str, str]) -> list[tuple[str, str]]:
    pairs = []
    for word in process_words(inst.value, lookup):
        key, eq, value = word.partition("=")
        if not eq or not key:
            raise inst.error(f"expected <key>=<value>, got {word!r}")
        pairs.append((key, value))
    return pairs


def _env(
    inst: Instruction, env: tuple[tuple[str, str], ...], lookup: Mapping[str, str]
) -> tuple[tuple[str, str], ...]:
    first = inst.value.split(None, 1)
    if not first:
        raise inst.error("ENV needs a name and a value")
    if "=" not in first[0]:  # the legacy form: ENV NAME the rest of the line
        if len(first) < 2:
            raise inst.error(f"ENV {first[0]} needs a value (ENV <name>=<value>)")
        return set_pair(env, first[0], process_word(first[1], lookup))
    for key, value in _pairs(inst, lookup):
        env = set_pair(env, key, value)
    return env


def _ports(inst: Instruction, lookup: Mapping[str, str]) -> list[str]:
    ports = []
    for word in process_words(inst.value, lookup):
        number, _, proto = word.partition("/")
        proto = (proto or "tcp").lower()
        low, _, high = number.partition("-")
        if not low.isdigit() or (high and not high.isdigit()) or proto not in ("tcp", "udp"):
            raise inst.error(f"invalid port {word!r}: expected <port>[/tcp|/udp]")
        for value in range(int(low), int(high or low) + 1):
            parse_port(f"{value}/{proto}")
            ports.append(f"{value}/{proto}")
    return ports


def _healthcheck(inst: Instruction, state: StageState) -> HealthcheckConfig | None:
    flags, rest = parse_flags(inst)
    unknown = set(flags) - {"interval", "timeout", "start-period", "start-interval", "retries"}
    if unknown:
        raise inst.error(f"unknown flag --{sorted(unknown)[0]}")
    if rest.upper() == "NONE":
        if flags:
            raise inst.error("HEALTHCHECK NONE takes no flags")
        return None
    keyword, _, command = rest.partition(" ")
    if keyword.upper() != "CMD" or not command.strip():
        raise inst.error("expected HEALTHCHECK [flags] CMD <command> or HEALTHCHECK NONE")
    command = command.strip()
    durations: dict[str, str] = {}
    for flag in ("interval", "timeout", "start-period", "start-interval"):
        value = flags.get(flag, [""])[-1]
        if value and not _DURATION.fullmatch(value):
            raise inst.error(f"--{flag}={value} is not a duration such as 30s or 1m30s")
        durations[flag] = value
    retries = flags.get("retries", ["0"])[-1]
    if not retries.isdigit():
        raise inst.error(f"--retries={retries} is not a number")
    exec_form = json_form(command)
    return HealthcheckConfig(
        args=tuple(exec_form) if exec_form is not None else (command,),
        shell=exec_form is None,
        interval=durations["interval"],
        timeout=durations["timeout"],
        start_period=durations["start-period"],
        start_interval=durations["start-interval"],
        retries=int(retries),
    )


def resolve_build_args(items: object) -> dict[str, str]:
    """buildArgs as graphql-core hands them over: a list of {name, value} objects."""
    out: dict[str, str] = {}
    for item in items or []:  # type: ignore[attr-defined]
        out[str(item["name"])] = str(item["value"])
    return out
