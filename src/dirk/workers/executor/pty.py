"""A container's process on a pseudo-terminal, relayed to a user's terminal somewhere else.

How each runtime gets its pty (measured with crun 1.8.1 and runc 1.1.5 here):

- crun: `process.terminal` with `--console-socket`. crun makes the pty in the container's own
  devpts and sends us its master end over a unix socket; it is the shell's controlling
  terminal (Ctrl-C, job control), and a TIOCSWINSZ on it resizes the shell's window.
- runc refuses a console socket in the foreground ("cannot use console socket if runc will not
  detach or allocate tty"). It gets a pty the engine opens as its stdio and controlling
  terminal (`setsid --ctty`); runc makes the container's pty, relays the two itself, and
  resizes the container's when the kernel sends it SIGWINCH for ours. (crun in that mode does
  not pass sizes on: `stty size` fails inside.)

Either way the engine holds one master fd: bytes in both directions and TIOCSWINSZ for the
window. The user's side is a `TerminalIO` (a websocket of the session, see `wire.terminal`).
"""

from __future__ import annotations

import array
import contextlib
import errno
import fcntl
import os
import pty
import signal
import socket
import struct
import subprocess
import termios
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import anyio
import attrs

from dirk.errors import ExecutorError, TerminalError

_CHUNK = 1 << 16
#: How long the runtime may take to hand over the console, or to exit once the shell did.
_CONSOLE_TIMEOUT = 30.0
#: Output still buffered in the pty when the process exits is read for at most this long.
_DRAIN_SECONDS = 1.0
CONSOLE_SOCKET = "console.sock"


@attrs.frozen
class WindowSize:
    """A terminal's size in character cells."""

    rows: int
    cols: int

    @classmethod
    def checked(cls, rows: object, cols: object) -> WindowSize:
        """A size from a client's message, clamped to what a tty holds (0 < n < 65536)."""
        if not isinstance(rows, int) or not isinstance(cols, int):
            return cls(24, 80)
        return cls(min(max(rows, 1), 0xFFFF), min(max(cols, 1), 0xFFFF))


class TerminalIO(Protocol):
    """The user's side of a terminal: what they type, what they see, their window size."""

    @property
    def size(self) -> WindowSize:
        """The window size when the terminal opened."""
        ...

    async def receive(self) -> bytes | WindowSize | None:
        """Input bytes or a new window size; None once the user's side is gone."""
        ...

    async def send(self, data: bytes) -> None:
        """Show output; raises `TerminalError` when the user's side is gone."""
        ...


def set_window_size(fd: int, size: WindowSize) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", size.rows, size.cols, 0, 0))


class PtyChild:
    """The runtime's `run` of one container whose process has a terminal: the master end of
    that terminal (or of the runtime's, for runc), the runtime's pid and its exit."""

    def __init__(self, proc: subprocess.Popen[bytes], master: int) -> None:
        self._proc = proc
        self.master = master
        self.pid = proc.pid
        self._pidfd = os.pidfd_open(proc.pid)
        os.set_blocking(master, False)

    @classmethod
    async def start(
        cls,
        runtime: str,
        argv: Sequence[str],
        bundle: Path,
        size: WindowSize,
        console: str = CONSOLE_SOCKET,
    ) -> PtyChild:
        """Start `argv` (the runtime's `run` or `exec`; crun's with `--console-socket
        <console>`, relative to `bundle`, its working directory) and get hold of the master
        end."""
        if runtime == "crun":
            return await cls._start_with_console_socket(argv, bundle, size, console)
        return cls._start_on_own_pty(argv, bundle, size)

    @classmethod
    def _start_on_own_pty(cls, argv: Sequence[str], bundle: Path, size: WindowSize) -> PtyChild:
        master, slave = pty.openpty()
        try:
            set_window_size(master, size)
            proc = subprocess.Popen(
                ["setsid", "--ctty", "--wait", *argv],
                stdin=slave,
                stdout=slave,
                stderr=slave,
                cwd=bundle,
                close_fds=True,
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        return cls(proc, master)

    @classmethod
    async def _start_with_console_socket(
        cls, argv: Sequence[str], bundle: Path, size: WindowSize, console: str
    ) -> PtyChild:
        # Bound through the directory's fd: a bundle path may be longer than sun_path allows.
        dir_fd = os.open(bundle, os.O_PATH | os.O_DIRECTORY)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        proc: subprocess.Popen[bytes] | None = None
        try:
            listener.bind(f"/proc/self/fd/{dir_fd}/{console}")
            listener.listen(1)
            listener.setblocking(False)
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=bundle,
                close_fds=True,
            )
            master = await _receive_console(listener, proc)
        except BaseException:
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
            raise
        finally:
            listener.close()
            os.close(dir_fd)
            with contextlib.suppress(OSError):
                (bundle / console).unlink()
        try:
            set_window_size(master, size)
        except OSError:
            os.close(master)
            raise
        return cls(proc, master)

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    def resize(self, size: WindowSize) -> None:
        with contextlib.suppress(OSError):
            set_window_size(self.master, size)

    async def wait(self) -> int:
        if self._proc.returncode is None:
            await anyio.wait_readable(self._pidfd)
        return self._proc.wait()

    def kill(self) -> None:
        if self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    def close(self) -> None:
        """Close the master end and the pidfd (the runtime must have been reaped)."""
        if self.master >= 0:
            os.close(self.master)
            self.master = -1
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1


async def _receive_console(listener: socket.socket, proc: subprocess.Popen[bytes]) -> int:
    """The master fd the runtime sends over `listener`; an error if it exits first."""
    with anyio.move_on_after(_CONSOLE_TIMEOUT):
        while True:
            try:
                conn, _ = listener.accept()
                break
            except BlockingIOError:
                pass
            if proc.poll() is not None:
                raise ExecutorError(
                    f"the runtime exited ({proc.returncode}) before handing over the terminal"
                )
            with anyio.move_on_after(0.05):
                await anyio.wait_readable(listener)
        with conn:
            conn.setblocking(False)
            while True:
                try:
                    _, ancillary, _, _ = conn.recvmsg(1024, socket.CMSG_SPACE(4))
                    break
                except BlockingIOError:
                    await anyio.wait_readable(conn)
        fds = array.array("i")
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
        if not fds:
            raise ExecutorError("the runtime sent no terminal over its console socket")
        for extra in fds[1:]:
            os.close(extra)
        return fds[0]
    raise ExecutorError(f"the runtime did not hand over a terminal within {_CONSOLE_TIMEOUT:.0f} s")


async def relay(child: PtyChild, io: TerminalIO) -> int:
    """Copy the user's input and window sizes to the pty and its output back until the
    runtime exits; returns the exit code. Raises `TerminalError` when the user's side goes
    away first (the caller kills the container)."""
    try:
        return await _relay(child, io)
    except BaseExceptionGroup as group:
        cancelled = anyio.get_cancelled_exc_class()
        errors = [e for e in group.exceptions if not isinstance(e, cancelled)]
        raise (errors or list(group.exceptions))[0] from None


async def _relay(child: PtyChild, io: TerminalIO) -> int:
    async with anyio.create_task_group() as tg:
        tg.start_soon(_copy_input, child, io)
        output_done = anyio.Event()

        async def copy_output() -> None:
            try:
                await _copy_output(child.master, io)
            finally:
                output_done.set()

        tg.start_soon(copy_output)
        code = await child.wait()
        with anyio.move_on_after(_DRAIN_SECONDS):
            await output_done.wait()
        tg.cancel_scope.cancel()
    return code


async def _copy_input(child: PtyChild, io: TerminalIO) -> None:
    while True:
        item = await io.receive()
        if item is None:
            raise TerminalError("the terminal's client went away while its shell was running")
        if isinstance(item, WindowSize):
            child.resize(item)
            continue
        view = memoryview(item)
        while view:
            try:
                written = os.write(child.master, view)
            except BlockingIOError:
                await anyio.wait_writable(child.master)
                continue
            except OSError as exc:
                if exc.errno == errno.EIO:  # the shell is gone: its exit ends the relay
                    return
                raise
            view = view[written:]


async def _copy_output(master: int, io: TerminalIO) -> None:
    while True:
        try:
            data = os.read(master, _CHUNK)
        except BlockingIOError:
            await anyio.wait_readable(master)
            continue
        except OSError as exc:
            if exc.errno == errno.EIO:  # every slave end is closed: the process is gone
                return
            raise
        if not data:
            return
        await io.send(data)
