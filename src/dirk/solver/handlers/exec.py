"""Exec: a command in a container.

The key covers the command and its whole environment as the operation states it (args, env,
cwd, user, hostname, stdin, expected exit, network, capabilities, redirects, the names of
volatile variables, each secret's `cache_id`) and the keys of the root and of every mount
source; cache volume contents, volatile values and secret values are not covered. Running it
fetches the secrets by handle from the jobs waiting (`step.secret`), mounts the root
read-write and each mount as asked, runs the container (output scrubbed of secret values,
then streamed as stdout/stderr events), checks the exit code against `expect` (a failure is never
cached), and commits the root and each writable bind mount as the step's outputs. A failed run
first opens a shell in the state it left, for a session whose client asked for one
(`dirk run -i`, `solver.terminal_debug`). `run_interactive` runs the container on the user's
terminal instead (`Container.terminal`) and keeps nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Literal

import anyio.to_thread
import attrs

from dirk import timing
from dirk.errors import OUTPUT_TAIL_BYTES, CommandNotFoundError, ExecError, SnapshotPathError
from dirk.solver.exec_secrets import ExecSecrets, exec_secrets
from dirk.solver.handlers.base import Handler, Step
from dirk.solver.mounts import StepMounts
from dirk.solver.ops import Exec, ExecMount, Ref
from dirk.solver.results import ExecOutcome, OpResult
from dirk.solver.sources import socket_mount
from dirk.solver.terminal import TerminalRequest, Terminals
from dirk.solver.terminal_debug import debug_shell
from dirk.workers.executor.spec import BindMount, ContainerSpec, TmpfsMount
from dirk.workers.snapshots import fileops
from dirk.workers.snapshots.layers import Snapshot
from dirk.workers.snapshots.snapshotter import ActiveMount


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
    ) -> tuple[ActiveMount, ContainerSpec, list[ActiveMount], ExecSecrets]:
        """The step's root mounted read-write, its mounts, secrets and container spec."""
        root = await mounts_of_step.read_write(step.inputs[op.root])
        mounts: list[BindMount | TmpfsMount] = []
        writable: list[ActiveMount] = []
        for mount in op.mounts:
            if mount.kind == "secret":  # a file the executor makes on a tmpfs
                continue
            mounts.append(
                await self._prepare_mount(mounts_of_step, stack, mount, step.inputs, writable)
            )
        secrets = exec_secrets(op, root.merged, step.secret)
        stdin = op.stdin
        if op.redirect_stdin:
            stdin = await anyio.to_thread.run_sync(_read_stdin, root.merged, op.redirect_stdin)
        spec = ContainerSpec(
            args=op.args,
            env=(*op.env, *(f"{name}={value}" for name, value in op.volatile_env)),
            cwd=op.cwd,
            user=op.user,
            hostname=op.hostname or step.key.removeprefix("sha256:")[:12],
            mounts=tuple(mounts),
            stdin=stdin,
            network=op.network,
            privileged=op.insecure_root_capabilities,
            secret_env=secrets.env,
            secret_files=secrets.files,
        )
        return root, spec, writable, secrets

    async def _prepare_mount(
        self,
        step_mounts: StepMounts,
        stack: AsyncExitStack,
        mount: ExecMount,
        inputs: Mapping[Ref, Snapshot],
        writable: list[ActiveMount],
    ) -> BindMount | TmpfsMount:
        if mount.kind == "socket":
            return socket_mount(mount)
        if mount.kind == "tmpfs":
            return TmpfsMount(mount.target, mount.size)
        if mount.kind == "cache":
            seed = None
            if mount.source is not None:
                seed = self._seeder(inputs[mount.source], mount.source_path)
            path = await stack.enter_async_context(
                self.workers.volumes.acquire(mount.cache_id, mount.sharing, seed)
            )
            return BindMount(path, mount.target, readonly=False)
        assert mount.source is not None, "a bind mount needs a source"
        snapshot = inputs[mount.source]
        if mount.readonly:
            view = await step_mounts.read_only(snapshot)
            source = fileops.resolve_in_root(view, mount.source_path)
            return BindMount(source, mount.target, readonly=True)
        active = await step_mounts.read_write(snapshot)
        writable.append(active)
        source = fileops.resolve_in_root(active.merged, mount.source_path)
        return BindMount(source, mount.target, readonly=False)

    def _seeder(self, snapshot: Snapshot, source_path: str) -> Callable[[Path], None]:
        snap = self.workers.snapshotter

        def seed(target: Path) -> None:
            with snap.mount_ro(snapshot) as view:
                fileops.copy_into(view, source_path, target, "/")

        return seed


def _exit_code_expected(op: Exec, code: int) -> bool:
    if op.expect == "ANY":
        return True
    if op.expect == "FAILURE":
        return code != 0
    return code == 0


def _tail(data: bytes) -> str:
    return data[-OUTPUT_TAIL_BYTES:].decode("utf-8", errors="replace")


def _read_stdin(root: Path, path: str) -> bytes:
    """The content of `path` in the step's root (symlinks followed inside it), for stdin."""
    target = fileops.resolve_in_root(root, path)
    try:
        return target.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        raise SnapshotPathError(
            f"{path}: no such file or directory (withExec(redirectStdin:) names a file in the "
            "container; create it in an earlier step)"
        ) from None
    except IsADirectoryError:
        raise SnapshotPathError(f"{path} is a directory, not a file to read stdin from") from None
