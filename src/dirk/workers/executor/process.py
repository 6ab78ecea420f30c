"""A child process with its pipes driven by the event loop, for the runtime's `run`.

`subprocess.Popen` (vfork + exec) plus non-blocking pipes and a pidfd awaited through anyio:
no child-watcher thread, no stream wrappers, and it works on any anyio backend.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence
from typing import Literal

import anyio

from dirk.workers.executor.spec import OutputCallback

_CHUNK = 1 << 16


class Child:
    """One running child: stdin fed from bytes (or /dev/null), stdout and stderr piped."""

    def __init__(self, argv: Sequence[str], stdin: bytes | None) -> None:
        self._input = stdin
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            close_fds=True,
        )
        self.pid = self._proc.pid
        self._pidfd = os.pidfd_open(self.pid)
        assert self._proc.stdout is not None and self._proc.stderr is not None
        self._out = self._proc.stdout.fileno()
        self._err = self._proc.stderr.fileno()
        os.set_blocking(self._out, False)
        os.set_blocking(self._err, False)
        if self._proc.stdin is not None:
            os.set_blocking(self._proc.stdin.fileno(), False)

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    async def communicate(
        self, on_output: OutputCallback | None
    ) -> tuple[int, bytes, bytes, tuple[tuple[int, int], ...]]:
        """Feed stdin, collect both streams as they come (calling `on_output` per chunk),
        and wait for the exit. Returns (exit code, stdout, stderr, arrival order as runs of
        (0 = stdout or 1 = stderr, byte count))."""
        out: list[bytes] = []
        err: list[bytes] = []
        order: list[list[int]] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._read, self._out, "stdout", out, on_output, order)
            tg.start_soon(self._read, self._err, "stderr", err, on_output, order)
            if self._proc.stdin is not None:
                tg.start_soon(self._write)
            code = await self.wait()
        runs = tuple((stream, count) for stream, count in order)
        return code, b"".join(out), b"".join(err), runs

    async def drain(self, on_output: OutputCallback) -> int:
        """Pass both streams to `on_output` as they come, keeping nothing (a long-running
        container's output would grow without bound), and wait for the exit code."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._read, self._out, "stdout", None, on_output, None)
            tg.start_soon(self._read, self._err, "stderr", None, on_output, None)
            if self._proc.stdin is not None:
                tg.start_soon(self._write)
            code = await self.wait()
        return code

    async def _read(
        self,
        fd: int,
        name: Literal["stdout", "stderr"],
        sink: list[bytes] | None,
        on_output: OutputCallback | None,
        order: list[list[int]] | None,
    ) -> None:
        stream = 0 if name == "stdout" else 1
        while True:
            try:
                data = os.read(fd, _CHUNK)
            except BlockingIOError:
                await anyio.wait_readable(fd)
                continue
            if not data:
                return
            if sink is not None:
                sink.append(data)
            if order is None:
                pass
            elif order and order[-1][0] == stream:
                order[-1][1] += len(data)
            else:
                order.append([stream, len(data)])
            if on_output is not None:
                on_output(name, data)

    async def _write(self) -> None:
        assert self._proc.stdin is not None
        fd = self._proc.stdin.fileno()
        view = memoryview(self._input or b"")
        try:
            while view:
                try:
                    written = os.write(fd, view[:_CHUNK])
                except BlockingIOError:
                    await anyio.wait_writable(fd)
                    continue
                view = view[written:]
        except (BrokenPipeError, ConnectionResetError):
            pass  # the command did not read all of its input: not our error
        finally:
            self._proc.stdin.close()

    async def wait(self) -> int:
        """Wait for the exit without blocking the loop; reaps the child."""
        if self._proc.returncode is None:
            await anyio.wait_readable(self._pidfd)
        return self._proc.wait()

    def kill(self) -> None:
        if self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    def close(self) -> None:
        """Close our ends of the pipes and the pidfd (the child must have been reaped)."""
        for stream in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
            if stream is not None and not stream.closed:
                stream.close()
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1
