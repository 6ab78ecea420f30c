"""`RUN`: its `--mount`, `--network` and `--security` flags, and the exec it becomes.

The exec is the SDK's `withExec` (`container_ops.with_exec`) on the stage's container with the
RUN's mounts added and the declared ARGs in its environment; afterwards the container keeps
the new root filesystem and drops both again, as Docker does.
"""

from __future__ import annotations

import csv
from collections.abc import Awaitable, Callable, Mapping

import attrs

from dirk.api.container_ops import with_exec, with_mount
from dirk.api.dockerfile.parse import Instruction, json_form, parse_flags
from dirk.api.dockerfile.scope import StageState
from dirk.api.dockerfile.secrets import secret_mount
from dirk.api.dockerfile.ssh import ssh_mount
from dirk.api.dockerfile.words import process_word
from dirk.api.paths import container_path, inside
from dirk.api.values import CacheVolume, Directory, Mount, Secret, Socket
from dirk.solver.ops import Sharing

#: A mount's `from=`: the root filesystem of a stage or image (None: the build context).
SourceRoot = Callable[[str | None], Awaitable[Directory]]

_SHARING: dict[str, Sharing] = {"shared": "SHARED", "private": "PRIVATE", "locked": "LOCKED"}


def mount_options(inst: Instruction, text: str) -> dict[str, str]:
    """`type=cache,target=/x,ro` -> {"type": "cache", "target": "/x", "ro": ""}."""
    options: dict[str, str] = {}
    for field in next(csv.reader([text])):
        key, _, value = field.strip().partition("=")
        if not key:
            raise inst.error(f"invalid --mount {text!r}")
        options[key.lower()] = value
    options.setdefault("type", "bind")
    return options


async def run(
    inst: Instruction,
    state: StageState,
    source_root: SourceRoot,
    secrets: Mapping[str, Secret] | None,
    ssh: Socket | None = None,
) -> StageState:
    flags, rest = parse_flags(inst)
    unknown = set(flags) - {"mount", "network", "security"}
    if unknown:
        raise inst.error(f"unknown flag --{sorted(unknown)[0]} (RUN takes --mount, --network)")
    if not rest:
        raise inst.error("RUN needs a command")
    argv = json_form(rest) or [*state.shell, rest]
    network = True
    for mode in flags.get("network", []):
        if mode == "none":
            network = False
        elif mode not in ("default", ""):
            raise inst.error(f"RUN --network={mode} is not supported by dirk (none or default)")
    privileged = False
    for mode in flags.get("security", []):
        if mode == "insecure":
            privileged = True
        elif mode != "sandbox":
            raise inst.error(f"unknown RUN --security={mode} (sandbox or insecure)")
    c = state.container
    base = StageState(
        attrs.evolve(c, env=state.run_env()), dict(state.args), state.shell, state.cmd_set
    )
    lookup = state.lookup()
    ssh_mounts = 0
    for text in flags.get("mount", []):
        options = {k: process_word(v, lookup) for k, v in mount_options(inst, text).items()}
        kind = options["type"]
        if kind == "secret":
            if secrets is None:
                raise inst.error("RUN --mount=type=secret is not supported by dirk yet")
            base = secret_mount(inst, base, options, secrets)
            continue
        if kind == "ssh":
            base = ssh_mount(inst, base, options, ssh, ssh_mounts)
            ssh_mounts += 1
            continue
        target = options.get("target") or options.get("dst") or options.get("destination")
        if not target:
            raise inst.error(f"RUN --mount=type={kind} needs target=<path>")
        target = container_path(c.workdir, target)
        mount = await _mount(inst, kind, target, options, source_root)
        base = attrs.evolve(base, container=with_mount(base.container, mount))
    after = with_exec(
        base.container,
        argv,
        insecure_root_capabilities=privileged,
        network=network,
    )
    restored = attrs.evolve(after, env=c.env, mounts=c.mounts, secret_env=c.secret_env)
    return attrs.evolve(state, container=restored)


async def _mount(
    inst: Instruction,
    kind: str,
    target: str,
    options: Mapping[str, str],
    source_root: SourceRoot,
) -> Mount:
    if kind == "cache":
        sharing = _SHARING.get(options.get("sharing", "shared").lower())
        if sharing is None:
            raise inst.error(f"invalid sharing={options['sharing']} (shared, private or locked)")
        seed = None
        if "from" in options:
            root = await source_root(options["from"])
            seed = Directory(root.ref, inside(root.subdir, options.get("source", "/")))
        volume = CacheVolume(options.get("id") or target, source=seed, sharing=sharing)
        return Mount(target, "cache", cache=volume, sharing=sharing)
    if kind == "bind":
        root = await source_root(options.get("from"))
        source = Directory(root.ref, inside(root.subdir, options.get("source", "/")))
        writable = "rw" in options or options.get("readwrite") in ("", "true")
        return Mount(target, "directory", directory=source, readonly=not writable)
    if kind == "tmpfs":
        size = options.get("size", "0")
        if not size.isdigit():
            raise inst.error(f"RUN --mount=type=tmpfs: size must be a number of bytes: {size}")
        return Mount(target, "tmpfs", size=int(size))
    raise inst.error(
        f"RUN --mount=type={kind} is not supported by dirk (cache, bind, tmpfs, secret, ssh)"
    )
