"""Exec: a command in a container.

The key covers the command and its whole environment as the operation states it (args, env,
cwd, user, hostname, stdin, expected exit, network, capabilities, redirects, the names of
volatile variables, each secret's `cache_id`) and the keys of the root and of every mount
source; cache volume contents, volatile values and secret values are not covered. Running it
fetches the secrets by handle from the jobs waiting (`step.secret`), mounts the root
read-write and each mount as asked, runs the container (output scrubbed of secret values,
then streamed as stdout/stderr events), with its services started first (or joined) and
reachable by name (`solver.services`), checks the exit code against `expect` (a failure is never
cached), and commits the root and each writable bind mount as the step's outputs. A failed run
first opens a shell in the state it left, for a session whose client asked for one
(`dirk run -i`, `solver.terminal_debug`). `run_interactive` runs the container on the user's
terminal instead (`Container.terminal`) and keeps nothing.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Literal

import anyio.to_thread
import attrs

from dirk import timing
from dirk.errors import OUTPUT_TAIL_BYTES, CommandNotFoundError, ExecError
from dirk.solver.exec_container import prepare_exec
from dirk.solver.exec_secrets import ExecSecrets
from dirk.solver.handlers.base import Handler, Step
from dirk.solver.job import BACKGROUND
from dirk.solver.mounts import StepMounts
from dirk.solver.ops import Exec
from dirk.solver.results import ExecOutcome, OpResult
from dirk.solver.terminal import TerminalRequest, Terminals
from dirk.solver.terminal_debug import debug_shell
from dirk.workers.executor.spec import ContainerSpec
from dirk.workers.snapshots import fileops
from dirk.workers.snapshots.snapshotter import ActiveMount

if TYPE_CHECKING:
    from dirk.solver.services import Endpoint


class ExecHandler(Handler[Exec]):
    async def run(self, op: Exec, step: Step) -> OpResult:
        executor = self.workers.executor
        async with AsyncExitStack() as stack:
            timing.mark("exec.start")
            mounts_of_step = StepMounts(self.workers.snapshotter, stack)
            root, spec, writable, secrets = await self._prepare(op, step, mounts_of_step, stack)
            timing.mark("exec.mounted")

            def on_output(stream: Literal["stdout", "stderr"], chunk: bytes) -> None:
                step.emit(stream, chunk)

            self.workers.counters.execs += 1
            try:
                if secrets.scrubber.active:
                    # Scrubbed before anything sees the output: events, errors, files, the cache.
                    output = secrets.scrubbed_output(on_output)
                    process = await executor.run(root.merged, spec, output.on_output)
                    stdout, stderr, order = output.finish()
                    process = attrs.evolve(process, stdout=stdout, stderr=stderr, order=order)
                else:
                    process = await executor.run(root.merged, spec, on_output)
            except CommandNotFoundError as exc:
                await debug_shell(executor, op, step, root.merged, spec, str(exc))
                raise
            if not _exit_code_expected(op, process.exit_code):
                failure = ExecError(
                    op.args, process.exit_code, _tail(process.stdout), _tail(process.stderr)
                )
                why = f"exited with code {process.exit_code}"
                await debug_shell(executor, op, step, root.merged, spec, why)
                raise failure
            for path, data in (
                (op.redirect_stdout, process.stdout),
                (op.redirect_stderr, process.stderr),
            ):
                if path:
                    await anyio.to_thread.run_sync(fileops.write_file, root.merged, path, data)
            timing.mark("exec.commit")
            outputs = [await mounts_of_step.commit(root, executor.stub_paths(spec))]
            for active in writable:
                outputs.append(await mounts_of_step.commit(active))
            timing.mark("exec.committed")
            outcome = ExecOutcome(process.exit_code, process.stdout, process.stderr, process.order)
            return OpResult(step.key, tuple(outputs), outcome)

    async def run_interactive(
        self, op: Exec, step: Step, terminals: Terminals, request: TerminalRequest
    ) -> int:
        """`op`'s container with `op.args` on the user's terminal instead of pipes; nothing
        it changes is kept (`Container.terminal`). Returns the shell's exit code."""
        async with AsyncExitStack() as stack:
            mounts_of_step = StepMounts(self.workers.snapshotter, stack)
            root, spec, _, _ = await self._prepare(op, step, mounts_of_step, stack)
            async with terminals.open(request) as terminal:
                code = await self.workers.executor.run_terminal(root.merged, spec, terminal)
                terminal.finish(code)
                return code

    async def _prepare(
        self, op: Exec, step: Step, mounts_of_step: StepMounts, stack: AsyncExitStack
    ) -> tuple[ActiveMount, ContainerSpec, tuple[ActiveMount, ...], ExecSecrets]:
        """The step's services running (started or joined, held until `stack` closes), its
        root mounted read-write, its mounts, secrets and container spec."""
        endpoints: tuple[Endpoint, ...] = ()
        jobs = step.jobs()
        if op.services:
            job = jobs[0] if jobs else BACKGROUND
            endpoints = await stack.enter_async_context(
                self.workers.services.bound(job, op.services, step.inputs)
            )
        prepared = await prepare_exec(
            self.workers,
            stack,
            mounts_of_step,
            op,
            step.inputs,
            step.secret,
            hostname=op.hostname or step.key.removeprefix("sha256:")[:12],
            endpoints=endpoints,
            # A nested command reaches the engine as the first waiting session that can.
            session_access=next(
                (j.session_access for j in jobs if j.session_access is not None), None
            ),
        )
        return prepared.root, prepared.spec, prepared.writable, prepared.secrets


def _exit_code_expected(op: Exec, code: int) -> bool:
    if op.expect == "ANY":
        return True
    if op.expect == "FAILURE":
        return code != 0
    return code == 0


def _tail(data: bytes) -> str:
    return data[-OUTPUT_TAIL_BYTES:].decode("utf-8", errors="replace")
