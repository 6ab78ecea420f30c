"""`dirk.Connection`: one session with an engine, used with `async with` or plain `with`.

Both modes share one async implementation (`dirk.wire.driver`). `async with` runs it on the
caller's event loop and leaf methods return coroutines. `with` runs the same coroutines with
blocking I/O to their end in the calling thread (no event loop, no asyncio import, no helper
thread), so the same objects work in plain scripts at the cost of a function call. A connection
given an httpx transport (`_http_transport`: tests, embedding) needs an event loop for it: its
`with` mode runs the coroutines on one in a helper thread (an anyio blocking portal) instead.

However a block is left (an exception, Ctrl-C, a cancelled task), the session is ended and its
HTTP client closed: the engine must not keep evaluating for a program that is gone. A program
that cannot leave the block (SIGKILL) is covered by the session's attach connection: the engine
ends the session when the kernel closes it.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from dirk import lazylog
from dirk.errors import ClientConnectionError, DirkError, EngineVersionWarning, InvalidArgumentError
from dirk.progress import PROGRESS_ENV
from dirk.sdk import failures
from dirk.sdk.callsite import user_stacklevel
from dirk.sdk.config import Config
from dirk.sdk.executor import Executor
from dirk.sdk.gen.client import Client
from dirk.sdk.modes import Async, Sync
from dirk.sdk.provision import SessionInfo, attach, close_session, open_session
from dirk.sdk.runtime import Runner
from dirk.versions import first_mismatch
from dirk.wire.attach import SessionAttachment
from dirk.wire.client import EngineAddress, GraphQLClient
from dirk.wire.driver import ANYIO, BLOCKING, IO, drive

if TYPE_CHECKING:
    import httpx
    from anyio.from_thread import BlockingPortal

    from dirk.progress import View
    from dirk.progress.watch import Watch
    from dirk.sdk.terminal import TerminalAttacher


#: Seconds the end of a session waits for its last step events to reach the progress views.
PROGRESS_DRAIN_S = 5.0


def _io_args(io: IO) -> dict[str, Any]:
    """`io=` for provisioning calls, passed only when it is not their default."""
    return {} if io is ANYIO else {"io": io}


class _LazyTerminal:
    """`sdk.terminal.TerminalAttacher`, imported (with asyncio) on a program's first
    `terminal` call rather than by every program."""

    def __init__(self, address: EngineAddress, token: str) -> None:
        self._address, self._token = address, token
        self._attacher: TerminalAttacher | None = None

    def attached(self) -> AbstractAsyncContextManager[None]:
        if self._attacher is None:
            from dirk.sdk.terminal import TerminalAttacher

            self._attacher = TerminalAttacher(self._address, self._token)
        return self._attacher.attached()


async def _watch_progress(config: Config, session: SessionInfo, io: IO) -> Watch | None:
    """The views this connection shows (`Config.log_output`, `Config.progress` or
    DIRK_PROGRESS), subscribed to the session's events; None when there are none (then
    nothing is subscribed and no view is imported: rich only for a live one)."""
    mode = config.progress or os.environ.get(PROGRESS_ENV) or "quiet"
    if config.log_output is None and mode == "quiet":
        return None
    from dirk.progress import make_view
    from dirk.progress.plain import PlainView
    from dirk.progress.watch import watch_events

    views: list[View] = []
    if config.log_output is not None:
        views.append(PlainView(config.log_output))
    try:
        if mode != "quiet":
            views.append(make_view(mode, sys.stderr, os.environ, in_process=True))
    except ValueError as exc:
        raise InvalidArgumentError(f"{PROGRESS_ENV}: {exc}") from None
    address = session.control or session.query_address
    try:
        return await watch_events(address, session.token, views, io=io)
    except ClientConnectionError as exc:
        lazylog.logger(__name__).warning("no progress view: %s", exc)
        return None


def session_labels() -> dict[str, str]:
    """The labels the engine records for sessions of this SDK."""
    from dirk import __version__

    return {"dirk.sdk.name": "python", "dirk.sdk.version": __version__}


def _warn_version(session: SessionInfo) -> None:
    """Warns once per process when the engine runs another dirk version than this SDK."""
    advice = first_mismatch(session.engine_version, f"at {session.control}")
    if advice is not None:
        warnings.warn(advice, EngineVersionWarning, stacklevel=user_stacklevel())


class Connection:
    """A session with a dirk engine.

    `async with dirk.Connection() as client:` gives a `Client[Async]` whose leaf methods return
    awaitables; `with dirk.Connection() as client:` gives a `Client[Sync]` whose leaf methods
    block and return values. Leaving the block ends the session.
    """

    #: Sends HTTP through this transport instead of the network (tests, embedding).
    _http_transport: httpx.AsyncBaseTransport | None = None

    def __init__(self, config: Config | None = None) -> None:
        self.config = config if config is not None else Config()
        self._session: SessionInfo | None = None
        self._attachment: SessionAttachment | None = None
        self._transport: GraphQLClient | None = None
        self._portal_cm: AbstractContextManager[BlockingPortal] | None = None
        self._portal: BlockingPortal | None = None
        self._watch: Watch | None = None

    async def _open(self, io: IO) -> Executor:
        if self._transport is not None:
            raise DirkError("this dirk.Connection is already open: create one per `with` block")
        started = time.monotonic()
        workdir = Path(self.config.workdir) if self.config.workdir is not None else Path.cwd()
        session = await open_session(
            workdir,
            session_labels(),
            engine=self.config.engine,
            explain=self.config.explain,
            **_io_args(io),
        )
        self._session = session
        failures.install_excepthook()
        _warn_version(session)
        try:
            self._attachment = await attach(session, **_io_args(io))
            self._transport = GraphQLClient(
                session.query_address,
                session.token,
                timeout=self.config.timeout,
                transport=self._http_transport,
                blocking=io.blocking,
            )
            if self.config.log_output is not None:
                elapsed = (time.monotonic() - started) * 1000
                self.config.log_output.write(
                    f"dirk: session open on {session.control or session.query_address} "
                    f"({elapsed:.0f} ms)\n"
                )
                self.config.log_output.flush()  # a file log shows it before a long first query
            self._watch = await _watch_progress(self.config, session, io)
        except BaseException:
            await self._close(io)  # no block will be left to do it
            raise
        terminal = _LazyTerminal(session.query_address, session.token)
        return Executor(self._transport, terminal, io)

    async def _close(self, io: IO) -> None:
        """Ends the session (DELETE, then the attach connection is dropped) and closes the
        HTTP client, even in a cancelled task (a timeout or Ctrl-C around the block): each
        control request has its own timeout."""
        transport, session, attachment = self._transport, self._session, self._attachment
        watch, self._watch = self._watch, None
        self._transport = self._session = self._attachment = None
        with io.shielded():
            try:
                if session is not None:
                    await close_session(session, attachment, **_io_args(io))
            finally:
                try:
                    if watch is not None:
                        # An ended session's stream ends once every event is out; a joined
                        # one's (`dirk run`'s) goes on: its last events are already here.
                        grace = PROGRESS_DRAIN_S if session and session.control else 0.2
                        await io.call_blocking(watch.finish, grace)
                finally:
                    if transport is not None:
                        await transport.aclose()

    async def __aenter__(self) -> Client[Async]:
        return Client(Runner(await self._open(ANYIO)))

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close(ANYIO)

    def __enter__(self) -> Client[Sync]:
        if self._http_transport is None:
            return Client(Runner(drive(self._open(BLOCKING)), blocking=True))
        from anyio.from_thread import start_blocking_portal

        portal_cm = start_blocking_portal()
        portal = portal_cm.__enter__()
        opening = portal.start_task_soon(self._open, ANYIO)
        try:
            executor = opening.result()
        except BaseException as exc:
            # Ctrl-C while connecting (an engine starting takes seconds): stop waiting for it.
            opening.cancel()
            portal_cm.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self._portal_cm, self._portal = portal_cm, portal
        return Client(Runner(executor, portal))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        portal_cm, portal = self._portal_cm, self._portal
        self._portal_cm = self._portal = None
        if portal_cm is None or portal is None:
            drive(self._close(BLOCKING))
            return
        try:
            portal.call(self._close, ANYIO)
        finally:
            portal_cm.__exit__(None, None, None)
