"""The terminal a client holds for its session: `solver.terminal.Terminals` for the solver.

One client connection at a time may hold a session's terminal (`wire.terminal` serves it as a
websocket): dirk's SDK while a query with `terminal` runs in a program on a tty, or
`dirk run -i` for the whole run (then also for a shell in each failed exec). The transport
hands in its two send functions and delivers what the client sends; shells take turns, so a
second waits until the first has closed. When the connection goes, an open shell's input ends
(the executor kills its container) and the next `open` fails with `TerminalError`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from dirk.errors import TerminalError
from dirk.solver.terminal import NO_TERMINAL, TerminalRequest
from dirk.workers.executor.pty import WindowSize

#: How long a client may take to answer an "open" with its window size.
SIZE_TIMEOUT_S = 10.0
DEFAULT_SIZE = WindowSize(24, 80)

SendText = Callable[[dict[str, Any]], Awaitable[None]]
SendBytes = Callable[[bytes], Awaitable[None]]


class TerminalHolder:
    """One client connection holding a session's terminal."""

    def __init__(self, send_text: SendText, send_bytes: SendBytes, on_failure: bool) -> None:
        self._send_text = send_text
        self._send_bytes = send_bytes
        self.on_failure = on_failure
        self.gone = False
        self._inbox: asyncio.Queue[bytes | WindowSize | None] = asyncio.Queue()

    def deliver(self, item: bytes | WindowSize) -> None:
        """What the client sent: input bytes or its window's new size."""
        if not self.gone:
            self._inbox.put_nowait(item)

    def disconnect(self) -> None:
        """The connection closed: an open shell's input ends."""
        self.gone = True
        self._inbox.put_nowait(None)

    async def _send(self, message: dict[str, Any]) -> None:
        try:
            await self._send_text(message)
        except (ConnectionError, RuntimeError) as exc:  # aiohttp: closing or closed socket
            self.disconnect()
            raise TerminalError(f"the terminal's client went away ({exc})") from exc


class _Terminal:
    """One shell's view of the holder (an `OpenTerminal`)."""

    def __init__(self, holder: TerminalHolder, size: WindowSize) -> None:
        self._holder = holder
        self._size = size
        self.exit_code: int | None = None

    @property
    def size(self) -> WindowSize:
        return self._size

    async def receive(self) -> bytes | WindowSize | None:
        holder = self._holder
        if holder.gone and holder._inbox.empty():
            return None
        return await holder._inbox.get()

    async def send(self, data: bytes) -> None:
        try:
            await self._holder._send_bytes(data)
        except (ConnectionError, RuntimeError) as exc:
            self._holder.disconnect()
            raise TerminalError(f"the terminal's client went away ({exc})") from exc

    def finish(self, exit_code: int) -> None:
        self.exit_code = exit_code


class SessionTerminals:
    """The terminal of one session, and the turn its shells take."""

    def __init__(self) -> None:
        self._holder: TerminalHolder | None = None
        self._turn = asyncio.Lock()

    @property
    def attached(self) -> bool:
        return self._holder is not None and not self._holder.gone

    @property
    def on_failure(self) -> bool:
        return self._holder is not None and not self._holder.gone and self._holder.on_failure

    def connect(
        self, send_text: SendText, send_bytes: SendBytes, on_failure: bool
    ) -> TerminalHolder:
        """A new connection takes the terminal; refused while another one holds it."""
        if self.attached:
            raise TerminalError(
                "another client already holds this session's terminal (an enclosing "
                "`dirk run -i`, or another program of the session): only one can"
            )
        holder = TerminalHolder(send_text, send_bytes, on_failure)
        self._holder = holder
        return holder

    def release(self, holder: TerminalHolder) -> None:
        holder.disconnect()
        if self._holder is holder:
            self._holder = None

    @contextlib.asynccontextmanager
    async def open(self, request: TerminalRequest) -> AsyncIterator[_Terminal]:
        async with self._turn:
            holder = self._holder
            if holder is None or holder.gone:
                raise TerminalError(NO_TERMINAL)
            while not holder._inbox.empty():  # typed after the last shell closed
                holder._inbox.get_nowait()
            await holder._send(
                {"type": "open", "title": request.title, "command": list(request.command)}
            )
            terminal = _Terminal(holder, await self._first_size(holder))
            try:
                yield terminal
            finally:
                if not holder.gone:
                    with contextlib.suppress(TerminalError):
                        await holder._send({"type": "exit", "code": terminal.exit_code})

    async def _first_size(self, holder: TerminalHolder) -> WindowSize:
        """The client answers an "open" with its window size; input before it is kept."""
        early: list[bytes] = []
        size = DEFAULT_SIZE
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SIZE_TIMEOUT_S):
                while True:
                    item = await holder._inbox.get()
                    if item is None:
                        raise TerminalError(
                            "the terminal's client went away before its shell started"
                        )
                    if isinstance(item, WindowSize):
                        size = item
                        break
                    early.append(item)
        later: list[bytes | WindowSize | None] = []
        while not holder._inbox.empty():
            later.append(holder._inbox.get_nowait())
        for item in (*early, *later):
            holder._inbox.put_nowait(item)
        return size
