"""A container left running (a service): its address, its exit, the tail of its output.

`Executor.detached` makes one and owns its resources (bundle, namespace, runtime state); the
handle only observes the container and signals it. Output is kept as a bounded tail of both
streams in the order they arrived, which is what an error about a failed service shows.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from signal import SIGTERM
from typing import Literal

import anyio

from dirk.workers.executor.process import Child
from dirk.workers.executor.runtime import not_found_command, runtime_errors
from dirk.workers.executor.spec import OutputCallback

#: How much of a running container's output the handle keeps (both streams together).
TAIL_BYTES = 64 * 1024


class RunningContainer:
    """One detached container: where it listens and how it is doing."""

    def __init__(
        self,
        *,
        container_id: str,
        address: str,
        veth: str,
        command: tuple[str, ...],
        runtime_log: Path,
        signal: Callable[[str], Awaitable[None]],
        init_pid: Callable[[], Awaitable[int | None]] | None = None,
        bundle: Path | None = None,
    ) -> None:
        self.container_id = container_id
        #: Its bundle (config.json): what a process started in it later runs with.
        self.bundle = bundle
        #: Its address on the bridge (10.89.x.y): the engine reaches it directly.
        self.address = address
        #: The host side of its veth pair (for the bridge's pairs, `network.allow_peers`).
        self.veth = veth
        self.command = command
        self.started = time.monotonic()
        self._log = runtime_log
        self._signal = signal
        self._init_pid = init_pid
        self._tail = bytearray()
        self._exited = anyio.Event()
        self.exit_code: int | None = None
        #: What the runtime said when it could not start the command ("" if it did).
        self.runtime_error = ""

    @property
    def running(self) -> bool:
        return not self._exited.is_set()

    def output_tail(self) -> bytes:
        """The last `TAIL_BYTES` of stdout and stderr, interleaved as they arrived."""
        return bytes(self._tail)

    async def wait(self) -> int:
        """Wait until the container has ended; its exit code (-1 if the runtime failed)."""
        await self._exited.wait()
        assert self.exit_code is not None
        return self.exit_code

    async def stop(self, grace: float) -> int:
        """SIGTERM, then SIGKILL if it still runs after `grace` seconds; waits for the end.

        The kernel drops a signal sent to a PID namespace's first process unless it handles
        it, so a command that runs as PID 1 without a SIGTERM handler (most servers: dirk
        adds no init) would only wait out the grace: it is killed at once instead."""
        if self.running and await self._handles_term():
            await self._signal("TERM")
            with anyio.move_on_after(grace):
                return await self.wait()
        return await self.kill()

    async def _handles_term(self) -> bool:
        """Whether the container's first process catches SIGTERM (True when unknown)."""
        pid = await self._init_pid() if self._init_pid is not None else None
        if pid is None:
            return True
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("SigCgt:"):
                        return bool(int(line.split()[1], 16) >> (SIGTERM - 1) & 1)
        except (OSError, ValueError):
            pass
        return True

    async def kill(self) -> int:
        """SIGKILL now; waits for the end."""
        while self.running:
            await self._signal("KILL")
            with anyio.move_on_after(0.5):
                return await self.wait()
        return await self.wait()

    async def pump(self, child: Child, on_output: OutputCallback | None) -> None:
        """Read the container's output until it ends (run by `Executor.detached`)."""

        def keep(stream: Literal["stdout", "stderr"], chunk: bytes) -> None:
            self._tail += chunk
            if len(self._tail) > TAIL_BYTES:
                del self._tail[: len(self._tail) - TAIL_BYTES]
            if on_output is not None:
                on_output(stream, chunk)

        code = -1
        try:
            code = await child.drain(keep)
        finally:
            if code != 0:
                errors = runtime_errors(self._log)
                if errors:
                    self.runtime_error = "; ".join(errors)
                    code = 127 if not_found_command(self.runtime_error) else code
            self.exit_code = code
            self._exited.set()
