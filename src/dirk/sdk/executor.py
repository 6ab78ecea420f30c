"""Sends a chain's query through the session's transport and picks the value out of the answer.

It also writes one line per query to `Config.log_output`: the chain's field names (never the
arguments: they may carry secrets) and how long the engine took.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from dirk.sdk.query import Call, describe, extract, render_query
from dirk.wire.driver import ANYIO, IO, drive

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager


class Terminal(Protocol):
    """What holds the user's terminal during a `terminal` call (`sdk.terminal`)."""

    def attached(self) -> AbstractAsyncContextManager[None]: ...


class Transport(Protocol):
    """What the executor needs from the wire: `dirk.wire.client.GraphQLClient` provides it."""

    closed: bool

    async def execute(self, query: str) -> dict[str, Any]: ...

    async def aclose(self) -> None: ...


class Executor:
    """One connection's query runner: renders a chain, sends it, extracts and logs the answer."""

    def __init__(
        self,
        transport: Transport,
        log_output: TextIO | None = None,
        terminal: Terminal | None = None,
        io: IO = ANYIO,
    ) -> None:
        self.transport = transport
        self.log_output = log_output
        #: Holds the user's terminal while a query that calls `terminal` runs (`sdk.terminal`).
        self.terminal = terminal
        #: How this connection's coroutines wait (blocking in a `with` connection).
        self.io = io

    @property
    def closed(self) -> bool:
        return self.transport.closed

    async def execute(self, chain: Sequence[Call], subfields: Sequence[str] = ()) -> Any:
        """The value the last call of `chain` selects (with `subfields` below it)."""
        if self.terminal is not None and any(call.field == "terminal" for call in chain):
            if self.io.blocking:  # the terminal's copying needs an event loop: one of its own
                import asyncio

                return asyncio.run(self._execute_attached(self.terminal, chain, subfields))
            return await self._execute_attached(self.terminal, chain, subfields)
        return await self._execute(chain, subfields)

    async def _execute_attached(
        self, terminal: Terminal, chain: Sequence[Call], subfields: Sequence[str]
    ) -> Any:
        async with terminal.attached():
            if self.io.blocking:  # the blocking query waits in a thread, the loop serves
                import asyncio

                return await asyncio.to_thread(drive, self._execute(chain, subfields))
            return await self._execute(chain, subfields)

    async def _execute(self, chain: Sequence[Call], subfields: Sequence[str]) -> Any:
        query = render_query(chain, subfields)
        started = time.monotonic()
        try:
            data = await self.transport.execute(query)
        except BaseException as exc:
            self._log(chain, started, f"failed: {type(exc).__name__}")
            raise
        self._log(chain, started, "")
        return extract(data, chain)

    def _log(self, chain: Sequence[Call], started: float, outcome: str) -> None:
        if self.log_output is None:
            return
        elapsed = time.monotonic() - started
        suffix = f" {outcome}" if outcome else ""
        self.log_output.write(f"dirk: {describe(chain)} ({elapsed * 1000:.0f} ms){suffix}\n")
        self.log_output.flush()
