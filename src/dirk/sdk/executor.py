"""Sends a chain's query through the session's transport and picks the value out of the answer.

What a person reads while a pipeline runs is the session's step stream (`dirk.progress`,
which `Config.log_output` and `Config.progress` show), not one line per query.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from dirk.sdk.query import Call, extract, render_query
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
        terminal: Terminal | None = None,
        io: IO = ANYIO,
    ) -> None:
        self.transport = transport
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
        data = await self.transport.execute(query)
        return extract(data, chain)
