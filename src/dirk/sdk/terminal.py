"""The user's terminal for shells the engine opens (`Container.terminal`, `dirk run -i`).

While a query that calls `terminal` runs, dirk's SDK holds the session's terminal
(`wire.terminal_client`). When a shell opens, the program's tty goes into raw mode (so keys,
Ctrl-C included, reach the shell), what the user types goes to the engine, what the shell
prints comes to stdout, and the window size follows the tty (polled: a SIGWINCH handler needs
the main thread, which a sync-mode program keeps). The tty's settings are restored when the
shell exits, and on every other way out (an error, a cancelled query, a lost engine).

A program with no tty cannot show a shell: `terminal` then fails with `TerminalError`, unless
it runs under `dirk run -i`, whose process holds the terminal for the whole session
(`HELD_ENV` tells the program so).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import sys
import termios
import threading
import tty
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, TextIO

from dirk.errors import TerminalError

if TYPE_CHECKING:
    from dirk.wire.client import EngineAddress
    from dirk.wire.terminal_client import TerminalConnection

#: Set by `dirk run -i` for its command: the session's terminal is held by `dirk run`.
HELD_ENV = "DIRK_TERMINAL_HELD"
#: Signals whose default action ends the program without running its `finally` blocks.
_ENDING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
#: How often the window size is compared with the last one sent.
SIZE_POLL_S = 0.25
#: How long the end of a `terminal` call waits for its shell's end to arrive: the engine
#: says so on the terminal's connection, the call's answer comes on another, either first.
SHELL_END_WAIT_S = 5.0

NO_TTY = (
    "Container.terminal needs a terminal, and this program's stdin is not a tty: run it from "
    "a terminal, or as `dirk run -i -- <program>` (the released Dagger SDKs cannot attach a "
    "terminal to dirk; leave terminal() out of pipelines that run in CI)"
)


async def hold_terminal(
    address: EngineAddress,
    token: str,
    *,
    on_failure: bool = False,
    ready: asyncio.Event | None = None,
    stdin: int = 0,
    stdout: int = 1,
    messages: TextIO | None = None,
    on_shell: Callable[[bool], None] | None = None,
) -> None:
    """Hold the session's terminal and run each shell the engine opens on the tty `stdin`
    until cancelled or the connection ends; `ready` is set once the terminal is held.
    `on_shell` hears when a shell opens (True) and when it has exited (False)."""
    from dirk.wire.terminal_client import connect_terminal  # aiohttp: only when needed

    async with connect_terminal(address, token, on_failure=on_failure) as connection:
        if ready is not None:
            ready.set()
        await _serve(connection, stdin, stdout, messages or sys.stderr, on_shell)


async def _serve(
    connection: TerminalConnection,
    stdin: int,
    stdout: int,
    messages: TextIO,
    on_shell: Callable[[bool], None] | None,
) -> None:
    from dirk.wire.terminal_client import ShellExited, ShellOpened

    def tell(open_: bool) -> None:
        if on_shell is not None:
            on_shell(open_)

    shell: _Shell | None = None
    try:
        async for event in connection.events():
            if isinstance(event, ShellOpened):
                tell(True)
                messages.write(f"dirk: {event.title}: {' '.join(event.command)}\n")
                messages.flush()
                shell = _Shell(connection, stdin)
                await shell.start()
            elif isinstance(event, ShellExited):
                if shell is not None:
                    await shell.stop()
                    shell = None
                messages.write(f"dirk: the shell exited ({_code(event.code)})\n")
                messages.flush()
                tell(False)
            elif shell is not None:
                _write_all(stdout, event)
    finally:
        if shell is not None:
            shell.close()
            tell(False)


def _code(code: int | None) -> str:
    return "stopped" if code is None else f"exit code {code}"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class _Shell:
    """One shell on the tty: raw mode, input and size relayed, settings restored at stop."""

    def __init__(self, connection: TerminalConnection, fd: int) -> None:
        self._connection = connection
        self._fd = fd
        self._saved: list[Any] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._handlers: dict[int, Any] = {}

    async def start(self) -> None:
        rows, cols = _size(self._fd)
        await self._connection.send_size(rows, cols)
        self._saved = termios.tcgetattr(self._fd)
        self._restore_on_signals()
        tty.setraw(self._fd, termios.TCSANOW)
        self._tasks = [
            asyncio.ensure_future(self._copy_input()),
            asyncio.ensure_future(self._follow_size(rows, cols)),
        ]

    def close(self) -> None:
        """Stop relaying and give the tty its settings back (synchronous: it must happen on
        every way out, a cancelled task's included)."""
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self._fd)
        self._restore_tty()
        for signum, previous in self._handlers.items():
            signal.signal(signum, previous)
        self._handlers = {}

    def _restore_tty(self) -> None:
        if self._saved is not None:
            with contextlib.suppress(termios.error):
                termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)
            self._saved = None

    def _restore_on_signals(self) -> None:
        """A signal that ends the program (SIGTERM, SIGHUP) runs no `finally`: while the tty
        is raw, such a signal gives it its settings back first, then does what it did."""
        if threading.current_thread() is not threading.main_thread():
            return  # only the main thread may set handlers; there the program's own stay

        def restore_then_forward(signum: int, frame: Any) -> None:
            previous = self._handlers.get(signum)
            if previous == signal.SIG_IGN:
                return
            self._restore_tty()
            if callable(previous):
                previous(signum, frame)
                return
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

        for signum in _ENDING_SIGNALS:
            self._handlers[signum] = signal.signal(signum, restore_then_forward)

    async def stop(self) -> None:
        self.close()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

    async def _copy_input(self) -> None:
        loop = asyncio.get_running_loop()
        readable = asyncio.Event()
        loop.add_reader(self._fd, readable.set)
        try:
            while True:
                await readable.wait()
                readable.clear()
                # The callback may have fired for input read since: check before a read that
                # would block (the tty's file is shared with the program: no O_NONBLOCK on it).
                if not select.select([self._fd], [], [], 0)[0]:
                    continue
                data = os.read(self._fd, 4096)
                if not data:
                    return
                await self._connection.send_input(data)
        finally:
            loop.remove_reader(self._fd)

    async def _follow_size(self, rows: int, cols: int) -> None:
        while True:
            await asyncio.sleep(SIZE_POLL_S)
            now = _size(self._fd)
            if now != (rows, cols):
                rows, cols = now
                await self._connection.send_size(rows, cols)


def _size(fd: int) -> tuple[int, int]:
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return 24, 80
    return size.lines, size.columns


class TerminalAttacher:
    """Holds a connection's terminal while queries that call `terminal` run (one connection
    shared by concurrent ones)."""

    def __init__(self, address: EngineAddress, token: str) -> None:
        self._address = address
        self._token = token
        self._users = 0
        self._task: asyncio.Task[None] | None = None
        self._ready: asyncio.Event | None = None
        self._no_shell = asyncio.Event()
        self._no_shell.set()

    def _on_shell(self, open_: bool) -> None:
        if open_:
            self._no_shell.clear()
        else:
            self._no_shell.set()

    @contextlib.asynccontextmanager
    async def attached(self) -> AsyncIterator[None]:
        if os.environ.get(HELD_ENV):  # `dirk run -i` holds it for the session
            yield
            return
        if not os.isatty(0):
            raise TerminalError(NO_TTY)
        if self._users == 0:
            self._ready = asyncio.Event()
            self._task = asyncio.ensure_future(
                hold_terminal(
                    self._address, self._token, ready=self._ready, on_shell=self._on_shell
                )
            )
        self._users += 1
        task, ready = self._task, self._ready
        assert task is not None and ready is not None
        try:
            await _ready_or_failed(task, ready)
            yield
            if self._users == 1:
                # The shell's end (and its "the shell exited" line) may arrive after the
                # call's answer: let it, before the terminal is let go.
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._no_shell.wait(), SHELL_END_WAIT_S)
        finally:
            self._users -= 1
            if self._users == 0:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.shield(task)
                self._task = self._ready = None


async def _ready_or_failed(task: asyncio.Task[None], ready: asyncio.Event) -> None:
    """Wait until the terminal is held; raise what made holding it fail."""
    waiter = asyncio.ensure_future(ready.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if not ready.is_set():
        task.result()  # raises why
        raise TerminalError("the engine closed the terminal before it was held")
