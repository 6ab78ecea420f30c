"""Containers on a terminal (crun through its console socket, runc through a pty of ours).

A scripted user types into the shell and reads what the shell prints, as a websocket client
would; the container's process must see a real terminal (tty, window size, Ctrl-C) and be
gone, with its bundle, whatever way the run ends.
"""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from dirk.errors import TerminalError
from dirk.workers.executor.executor import Executor
from dirk.workers.executor.pty import WindowSize
from dirk.workers.executor.spec import ContainerSpec

pytestmark = [pytest.mark.integration, pytest.mark.anyio, pytest.mark.usefixtures("no_leaks")]


class ScriptedUser:
    """A user at a terminal: what they type is queued, what they see is collected."""

    def __init__(self, size: WindowSize | None = None) -> None:
        self._size = size or WindowSize(30, 90)
        self._send, self._inbox = anyio.create_memory_object_stream[bytes | WindowSize | None](100)
        self.screen = b""
        self._changed = anyio.Event()

    @property
    def size(self) -> WindowSize:
        return self._size

    async def receive(self) -> bytes | WindowSize | None:
        try:
            return await self._inbox.receive()
        except anyio.EndOfStream:
            return None

    async def send(self, data: bytes) -> None:
        self.screen += data
        self._changed.set()
        self._changed = anyio.Event()

    def type(self, item: bytes | WindowSize) -> None:
        self._send.send_nowait(item)

    def leave(self) -> None:
        self._send.close()

    async def expect(self, text: bytes, timeout: float = 10.0) -> None:
        """Wait until `text` shows after the last thing expected; then forget the screen."""
        with anyio.fail_after(timeout):
            while text not in self.screen:
                await self._changed.wait()
        self.screen = self.screen[self.screen.index(text) + len(text) :]


def _bundles(executor: Executor) -> list[str]:
    return os.listdir(executor.layout.run / "c")


async def test_a_shell_sees_a_terminal_and_its_exit_code_comes_back(
    executor: Executor, rootfs: Path
) -> None:
    user = ScriptedUser()
    spec = ContainerSpec(args=("sh",), env=("GREETING=hi there",), cwd="/tmp")
    async with anyio.create_task_group() as tg:
        result: list[int] = []

        async def run() -> None:
            result.append(await executor.run_terminal(rootfs, spec, user))

        tg.start_soon(run)
        user.type(b"tty; echo [$GREETING] in $(pwd) as $TERM\n")
        await user.expect(b"/dev/pts/0")
        await user.expect(b"[hi there] in /tmp as xterm")
        user.type(b"stty size\n")
        await user.expect(b"30 90")
        user.type(WindowSize(50, 120))
        await anyio.sleep(0.2)
        user.type(b"stty size\n")
        await user.expect(b"50 120")
        user.type(b"sleep 100\n")
        await anyio.sleep(0.3)
        user.type(b"\x03")  # Ctrl-C reaches the shell's foreground job through the tty
        await user.expect(b"^C")
        user.type(b"echo still here; exit 7\n")
        await user.expect(b"still here")
    assert result == [7]
    assert _bundles(executor) == []


async def test_the_container_dies_when_its_user_leaves(executor: Executor, rootfs: Path) -> None:
    user = ScriptedUser()
    spec = ContainerSpec(args=("sh", "-c", "echo ready; sleep 1000"))
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:

            async def leave_once_ready() -> None:
                await user.expect(b"ready")
                user.leave()

            tg.start_soon(leave_once_ready)
            with pytest.raises(TerminalError, match="went away"):
                await executor.run_terminal(rootfs, spec, user)
    assert _bundles(executor) == []
    assert os.listdir(executor.layout.run / "runtime" / executor.runtime) == []


async def test_a_cancelled_terminal_kills_its_container(executor: Executor, rootfs: Path) -> None:
    user = ScriptedUser()
    spec = ContainerSpec(args=("sh", "-c", "echo ready; sleep 1000"))
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:

            async def run() -> None:
                await executor.run_terminal(rootfs, spec, user)

            tg.start_soon(run)
            await user.expect(b"ready")
            tg.cancel_scope.cancel()
    assert _bundles(executor) == []
    assert os.listdir(executor.layout.run / "runtime" / executor.runtime) == []


async def test_a_shell_execed_into_a_running_container_shares_it_and_leaves_it_running(
    executor: Executor, rootfs: Path
) -> None:
    """`exec_terminal` (Service.terminal): the shell sees the container's files, processes
    and environment, gets a terminal of its size; the container outlives it."""
    spec = ContainerSpec(
        args=("sh", "-c", "echo made-by-pid1 > /tmp/mark; exec sleep 1000"),
        env=("WHO=the-service",),
        cwd="/tmp",
    )
    user = ScriptedUser(WindowSize(33, 77))
    with anyio.fail_after(60):
        async with executor.detached(rootfs, spec) as running:
            while not (rootfs / "tmp" / "mark").exists():
                await anyio.sleep(0.05)
            async with anyio.create_task_group() as tg:
                result: list[int] = []

                async def shell() -> None:
                    result.append(await executor.exec_terminal(running, ["sh"], user))

                tg.start_soon(shell)
                user.type(b"cat mark; echo [$WHO]; stty size; tty\n")
                await user.expect(b"made-by-pid1")
                await user.expect(b"[the-service]")
                await user.expect(b"33 77")
                await user.expect(b"/dev/pts/")
                user.type(b"ps | grep -c '[s]leep 1000'; exit 5\n")
                await user.expect(b"1")
            assert result == [5]
            assert running.running
            assert [n for n in os.listdir(running.bundle or "") if n.startswith("exec-")] == []


async def test_a_cancelled_exec_shell_is_killed_and_its_container_runs_on(
    executor: Executor, rootfs: Path
) -> None:
    spec = ContainerSpec(args=("sleep", "1000"))
    user = ScriptedUser()
    with anyio.fail_after(60):
        async with executor.detached(rootfs, spec) as running:
            async with anyio.create_task_group() as tg:

                async def shell() -> None:
                    await executor.exec_terminal(
                        running, ["sh", "-c", "echo ready; sleep 999"], user
                    )

                tg.start_soon(shell)
                await user.expect(b"ready")
                tg.cancel_scope.cancel()
            out = await anyio.run_process(["ps", "-eo", "args"])
            assert b"sleep 999" not in out.stdout
            assert running.running
