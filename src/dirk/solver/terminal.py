"""Interactive terminals as the solver sees them: who holds the user's terminal for a job.

A session's client may hold a terminal for it (dirk's SDK in a program on a tty, or
`dirk run -i`; see `engine.terminals` and `wire.terminal`). The solver uses it for two
things: `Container.terminal` (a shell in a container, `Solver.interactive`) and, when the
client asked for it (`on_failure`), a shell in the state a failed exec left (`handlers.exec`).
Terminals of one session open one after another: a second waits for the first to close.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol

import attrs

from dirk.workers.executor.pty import TerminalIO

#: Why a terminal cannot open when no client holds one, and the fixes.
NO_TERMINAL = (
    "no terminal is attached to this session: Container.terminal needs the user's terminal. "
    "Run the program with dirk's SDK in a terminal (its stdin a tty), or under `dirk run -i`; "
    "the released Dagger SDKs cannot attach one to dirk"
)


@attrs.frozen
class TerminalRequest:
    """What is about to open, for the client to say before the shell starts."""

    #: One line: why a shell opens ("Container.terminal", or which step failed and how).
    title: str
    command: tuple[str, ...]


class OpenTerminal(TerminalIO, Protocol):
    """A terminal while its shell runs; `finish` records how the shell ended."""

    def finish(self, exit_code: int) -> None: ...


class Terminals(Protocol):
    """The terminal a client holds for a session."""

    @property
    def attached(self) -> bool:
        """Whether a client holds a terminal for the session now."""
        ...

    @property
    def on_failure(self) -> bool:
        """Whether that client asked for a shell in each failed exec (`dirk run -i`)."""
        ...

    def open(self, request: TerminalRequest) -> AbstractAsyncContextManager[OpenTerminal]:
        """The user's terminal for one shell, once the terminals before it have closed;
        raises `TerminalError` when no client holds one."""
        ...
