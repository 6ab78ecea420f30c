"""`RUN --mount=type=secret`: a secret of the build (`dockerBuild(secrets:)`, by name) as a
file for one RUN (default /run/secrets/<id>) or, with `env=`, as one of its variables.

Only the secret's reference enters the exec (and its cache key); the value reaches the step
at run time, as for the SDK's `withMountedSecret` and `withSecretVariable`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import attrs

from dirk.api.container_ops import with_mount
from dirk.api.dockerfile.parse import Instruction
from dirk.api.dockerfile.scope import StageState
from dirk.api.paths import container_path
from dirk.api.values import Mount, Secret


def secret_mount(
    inst: Instruction, state: StageState, options: Mapping[str, str], secrets: Mapping[str, Secret]
) -> StageState:
    c = state.container
    name = options.get("id") or (options.get("target") or "").rsplit("/", 1)[-1]
    if not name:
        raise inst.error("RUN --mount=type=secret needs id=<secret name>")
    secret = secrets.get(name)
    if secret is None:
        if options.get("required", "false").lower() in ("", "true"):
            known = ", ".join(sorted(secrets)) or "none"
            raise inst.error(
                f"the secret {name!r} is required but not given to the build (pass it in "
                f"dockerBuild(secrets:); given: {known})"
            )
        return state  # Docker skips a missing optional secret
    if "env" in options:
        if not options["env"]:
            raise inst.error("RUN --mount=type=secret,env= needs a variable name")
        variable = options["env"]
        kept = tuple((n, r) for n, r in c.secret_env if n != variable)
        c = attrs.evolve(c, secret_env=(*kept, (variable, secret.ref)))
        if "target" not in options and "dst" not in options:
            return attrs.evolve(state, container=c)
    target = options.get("target") or options.get("dst") or f"/run/secrets/{name}"
    mode_text = options.get("mode", "0400")
    if not re.fullmatch(r"[0-7]{3,4}", mode_text):
        raise inst.error(f"RUN --mount=type=secret,mode={mode_text}: use an octal mode")
    uid, gid = options.get("uid", ""), options.get("gid", "")
    owner = f"{uid or 0}:{gid or 0}" if uid or gid else ""
    mount = Mount(
        container_path(c.workdir, target),
        "secret",
        secret=secret.ref,
        owner=owner,
        mode=int(mode_text, 8),
        readonly=True,
    )
    return attrs.evolve(state, container=with_mount(c, mount))
