"""More of `Container`: removing files, symlinks, several files at once, unsetting its
configuration, annotations, volatile variables, the healthcheck, the terminal command, the
combined output of the last command, and reading back its platform, mounts and image."""

from __future__ import annotations

import re
from typing import Any

import attrs

from dirk.api.container import exec_outcome, require_root_session
from dirk.api.container_ops import set_pair, write_at
from dirk.api.context import RequestContext
from dirk.api.directory import without
from dirk.api.directory_write import raise_if_error, with_files, with_symlink
from dirk.api.ids import identity
from dirk.api.paths import container_path, expand
from dirk.api.registry import Args, builds, leaf
from dirk.api.values import (
    Container,
    Directory,
    File,
    Handle,
    HealthcheckConfig,
    TerminalCommand,
)
from dirk.errors import InvalidArgumentError
from dirk.solver.ops import ImagePull
from dirk.workers.images.reference import ImageReference

#: A Go duration, as Docker's healthcheck fields take them ("30s", "1m30s", "500ms").
_DURATION = re.compile(r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")


def _ctr(parent: Handle | None) -> Container:
    assert parent is not None and isinstance(parent.value, Container)
    return parent.value


def _path(c: Container, args: Args, raw: str) -> str:
    if args.get("expand"):
        raw = expand(raw, dict(c.env))
    return container_path(c.workdir, raw)


def _without_path(c: Container, path: str) -> Container:
    return write_at(c, path, lambda d, rel: without(d, rel or "."))


# --- files -------------------------------------------------------------------------------------


@builds("Container", "withSymlink")
async def container_with_symlink(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Container:
    c = _ctr(parent)
    target: str = args["target"]
    if args["expand"]:
        target = expand(target, dict(c.env))
    link = _path(c, args, args["linkName"])
    return write_at(c, link, lambda d, rel: with_symlink(d, target, rel))


@builds("Container", "withFiles")
async def container_with_files(ctx: RequestContext, parent: Handle | None, args: Args) -> Container:
    c = _ctr(parent)
    sources = []
    for file_id in args["sources"]:
        value = ctx.load(file_id, "File").value
        assert isinstance(value, File)
        sources.append(value)

    def change(d: Directory, rel: str) -> Directory:
        return with_files(d, rel or ".", sources, args["permissions"], args["owner"])

    return write_at(c, _path(c, args, args["path"]), change)


@builds("Container", "withoutFiles")
async def container_without_files(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Container:
    c = _ctr(parent)
    for raw in args["paths"]:
        c = _without_path(c, _path(c, args, raw))
    return c


@builds("Container", "withoutFile")
async def container_without_file(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Container:
    c = _ctr(parent)
    return _without_path(c, _path(c, args, args["path"]))


@builds("Container", "withoutDirectory")
async def container_without_directory(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Container:
    c = _ctr(parent)
    return _without_path(c, _path(c, args, args["path"]))


# --- mounts ------------------------------------------------------------------------------------


@builds("Container", "withoutMount")
async def container_without_mount(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Container:
    c = _ctr(parent)
    target = _path(c, args, args["path"])
    return attrs.evolve(c, mounts=tuple(m for m in c.mounts if m.target != target))


@leaf("Container", "mounts", memo=False)
async def container_mounts(ctx: RequestContext, parent: Handle | None, args: Args) -> list[str]:
    return [m.target for m in _ctr(parent).mounts]


# --- configuration -----------------------------------------------------------------------------


@builds("Container", "withoutWorkdir")
async def container_without_workdir(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Container:
    return attrs.evolve(_ctr(parent), workdir="")


@builds("Container", "withoutUser")
async def container_without_user(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Container:
    return attrs.evolve(_ctr(parent), user="")


@builds("Container", "withoutEntrypoint")
async def container_without_entrypoint(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Container:
    c = _ctr(parent)
    default_args = c.default_args if args["keepDefaultArgs"] else ()
    return attrs.evolve(c, entrypoint=(), default_args=default_args)


@builds("Container", "withoutDefaultArgs")
async def container_without_default_args(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Container:
    return attrs.evolve(_ctr(parent), default_args=())


@builds("Container", "withoutLabel")
async def container_without_label(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Container:
    c = _ctr(parent)
    return attrs.evolve(c, labels=tuple(p for p in c.labels if p[0] != args["name"]))


@builds("Container", "withAnnotation")
async def container_with_annotation(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Container:
    c = _ctr(parent)
    return attrs.evolve(c, annotations=set_pair(c.annotations, args["name"], args["value"]))


@builds("Container", "withoutAnnotation")
async def container_without_annotation(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Container:
    c = _ctr(parent)
    return attrs.evolve(c, annotations=tuple(p for p in c.annotations if p[0] != args["name"]))


@builds("Container", "withVolatileVariable")
async def container_with_volatile_variable(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Container:
    c = _ctr(parent)
    return attrs.evolve(c, volatile_env=set_pair(c.volatile_env, args["name"], args["value"]))


@builds("Container", "withoutVolatileVariable")
async def container_without_volatile_variable(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Container:
    c = _ctr(parent)
    return attrs.evolve(c, volatile_env=tuple(p for p in c.volatile_env if p[0] != args["name"]))


@builds("Container", "withDefaultTerminalCmd")
async def container_with_default_terminal_cmd(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Container:
    privileged = bool(args["insecureRootCapabilities"])
    if privileged:
        require_root_session(ctx, "withDefaultTerminalCmd(insecureRootCapabilities: true)")
    command = TerminalCommand(
        tuple(args["args"]),
        insecure_root_capabilities=privileged,
        nesting=bool(args["experimentalPrivilegedNesting"]),
    )
    return attrs.evolve(_ctr(parent), default_terminal_cmd=command)


def _duration(args: Args, name: str) -> str:
    value: str = args[name] or ""
    if value and not _DURATION.match(value):
        raise InvalidArgumentError(
            f"withDockerHealthcheck: {name} {value!r} is not a duration; write it like "
            '"30s", "1m30s" or "500ms"'
        )
    return value


@builds("Container", "withDockerHealthcheck")
async def container_with_docker_healthcheck(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Container:
    command = tuple(args["args"])
    shell = bool(args["shell"])
    if not command:
        raise InvalidArgumentError("withDockerHealthcheck: args must name a command")
    if shell and len(command) != 1:
        raise InvalidArgumentError(
            "withDockerHealthcheck(shell: true): args must be one shell command line"
        )
    retries = args["retries"] or 0
    if retries < 0:
        raise InvalidArgumentError(f"withDockerHealthcheck: retries must be >= 0, not {retries}")
    config = HealthcheckConfig(
        args=command,
        shell=shell,
        interval=_duration(args, "interval"),
        timeout=_duration(args, "timeout"),
        start_period=_duration(args, "startPeriod"),
        start_interval=_duration(args, "startInterval"),
        retries=retries,
    )
    return attrs.evolve(_ctr(parent), healthcheck=config)


@builds("Container", "withoutDockerHealthcheck")
async def container_without_docker_healthcheck(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Container:
    return attrs.evolve(_ctr(parent), healthcheck=None)


@leaf("Container", "dockerHealthcheck", memo=False)
async def container_docker_healthcheck(
    ctx: RequestContext, parent: Handle | None, args: Args
) -> Handle | None:
    assert parent is not None
    config = _ctr(parent).healthcheck
    if config is None:
        return None
    ident = identity(parent.ident, "dockerHealthcheck", {})
    return ctx.table.add(Handle("HealthcheckConfig", ident, config))


@builds("Container", "withError")
async def container_with_error(ctx: RequestContext, parent: Handle | None, args: Args) -> Container:
    raise_if_error(args["err"])
    return _ctr(parent)


# --- reading back ------------------------------------------------------------------------------


@leaf("Container", "platform", memo=False)
async def container_platform(ctx: RequestContext, parent: Handle | None, args: Args) -> str:
    return _ctr(parent).platform


@leaf("Container", "imageRef", memo=False)
async def container_image_ref(ctx: RequestContext, parent: Handle | None, args: Args) -> str:
    """The pulled image pinned by digest, while the root filesystem is still exactly it."""
    rootfs = _ctr(parent).rootfs
    pull = rootfs.ref.op
    if not isinstance(pull, ImagePull) or rootfs.subdir != "/":
        raise InvalidArgumentError(
            "imageRef: the container's root filesystem is not an unchanged image; "
            "ask for imageRef right after `from`"
        )
    return str(ImageReference.parse(pull.reference).with_digest(pull.digest))


@leaf("Container", "combinedOutput")
async def container_combined_output(ctx: RequestContext, parent: Handle | None, args: Args) -> str:
    c = _ctr(parent)
    if c.last_exec is None:
        raise InvalidArgumentError(
            "combinedOutput: no command has been run in this container; call withExec first"
        )
    outcome = await exec_outcome(ctx, c.last_exec)
    return outcome.combined.decode("utf-8", errors="replace")


def _attribute_leaf(field: str, attribute: str) -> None:
    async def resolve(ctx: RequestContext, parent: Handle | None, args: Args) -> Any:
        assert parent is not None
        value = getattr(parent.value, attribute)
        return list(value) if isinstance(value, tuple) else value

    leaf("HealthcheckConfig", field, memo=False)(resolve)


for _field, _attribute in (
    ("args", "args"),
    ("shell", "shell"),
    ("interval", "interval"),
    ("timeout", "timeout"),
    ("startPeriod", "start_period"),
    ("startInterval", "start_interval"),
    ("retries", "retries"),
):
    _attribute_leaf(_field, _attribute)
