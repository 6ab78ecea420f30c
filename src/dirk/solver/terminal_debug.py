"""A shell in a failed exec's container, for a client that asked for one (`dirk run -i`).

The step's root is still mounted as the command left it (its upper layer), with the same
mounts, environment, secrets, user, working directory and network; the shell (the
container's default terminal command, else `sh`) runs there on the user's terminal. When it
exits, the step fails as it would have: the shell changes nothing that is kept. Shells of one
session open one after another (`Terminals.open`), so concurrent failures wait their turn.
"""

from __future__ import annotations

import logging
from pathlib import Path

import attrs

from dirk.errors import ExecutorError, TerminalError
from dirk.solver.handlers.base import Step
from dirk.solver.ops import Exec
from dirk.solver.terminal import TerminalRequest, Terminals
from dirk.workers.executor.executor import Executor
from dirk.workers.executor.spec import ContainerSpec

log = logging.getLogger(__name__)

#: How much of the failed command a terminal's title shows.
_TITLE_COMMAND_CHARS = 120


def debugging_terminals(step: Step) -> Terminals | None:
    """The terminal of the first job waiting for `step` whose client wants failure shells."""
    for job in step.jobs():
        if job.terminals is not None and job.terminals.on_failure:
            return job.terminals
    return None


async def debug_shell(
    executor: Executor, op: Exec, step: Step, root: Path, spec: ContainerSpec, why: str
) -> None:
    """Open the shell if a waiting job's client wants one; returns when it has exited. A
    shell that cannot run (no `sh` in the image, the client gone) is logged, never raised:
    the step's own failure is what the pipeline reports."""
    terminals = debugging_terminals(step)
    if terminals is None:
        return
    shell = op.debug_shell or ("sh",)
    command = " ".join(op.args)
    if len(command) > _TITLE_COMMAND_CHARS:
        command = command[:_TITLE_COMMAND_CHARS] + "..."
    request = TerminalRequest(f"exec {command} {why}", shell)
    try:
        async with terminals.open(request) as terminal:
            terminal.finish(
                await executor.run_terminal(root, attrs.evolve(spec, args=shell), terminal)
            )
    except (TerminalError, ExecutorError) as exc:
        log.warning("the shell in the failed step %s could not run: %s", step.description, exc)
