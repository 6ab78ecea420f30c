"""`RUN --mount=type=ssh`: the build's forwarded SSH agent (`dockerBuild(ssh:)`, a host unix
socket) mounted for one RUN, as BuildKit does: at `target` (default
`/run/buildkit/ssh_agent.<n>`, n counting the RUN's ssh mounts), with `SSH_AUTH_SOCK` set to
the first one. The build has one agent, which serves `id=default` (the id when none is given).
An absent agent fails the RUN only with `required=true`, BuildKit's default being false.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from dirk.api.container_ops import with_mount
from dirk.api.dockerfile.parse import Instruction
from dirk.api.dockerfile.scope import StageState
from dirk.api.paths import container_path
from dirk.api.values import Mount, Socket

#: The one agent id the build's `ssh` socket answers to.
DEFAULT_ID = "default"
_OPTIONS = frozenset({"type", "id", "target", "dst", "destination", "required"})


def ssh_mount(
    inst: Instruction,
    state: StageState,
    options: Mapping[str, str],
    ssh: Socket | None,
    index: int,
) -> StageState:
    """`state` with the agent socket mounted (and SSH_AUTH_SOCK set for its first mount)."""
    unknown = sorted(set(options) - _OPTIONS)
    if unknown:
        raise inst.error(
            f"RUN --mount=type=ssh,{unknown[0]}= is not supported by dirk (id, target, required)"
        )
    agent_id = options.get("id") or DEFAULT_ID
    required = options.get("required", "false").lower() in ("", "true")
    if ssh is None or agent_id != DEFAULT_ID:
        if not required:
            return state  # BuildKit skips an optional agent the build was not given
        given = "pass a socket in dockerBuild(ssh:), e.g. host().unixSocket($SSH_AUTH_SOCK)"
        if ssh is not None:
            given = f"the build's ssh socket serves id={DEFAULT_ID} only"
        raise inst.error(f"the SSH agent {agent_id!r} is required but not given: {given}")
    c = state.container
    raw = options.get("target") or options.get("dst") or options.get("destination")
    target = container_path(c.workdir, raw or f"/run/buildkit/ssh_agent.{index}")
    c = with_mount(c, Mount(target, "socket", socket=ssh))
    if index == 0:
        env = tuple((k, v) for k, v in c.env if k != "SSH_AUTH_SOCK")
        c = attrs.evolve(c, env=(*env, ("SSH_AUTH_SOCK", target)))
    return attrs.evolve(state, container=c)
