"""`dirk.connection()` and the global client `dirk.dag`, as Dagger's SDK has them.

    async with dirk.connection():              with dirk.connection():
        await dag.container().from_(...)...        dag.container().from_(...)...

`dag` is one process-wide client whose objects run their leaves through whichever
`dirk.connection()` block is open when the leaf is called (an object built before the block
works inside it, as in Dagger). Only one such block may be open at a time; `dirk.Connection()`
gives independent clients for anything more.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, cast

from dirk.errors import ClientConnectionError, DirkError
from dirk.sdk.config import Config
from dirk.sdk.connection import Connection
from dirk.sdk.gen.client import Client
from dirk.sdk.modes import Async, Either, Sync
from dirk.sdk.runtime import Runner

if TYPE_CHECKING:
    from anyio.from_thread import BlockingPortal

    from dirk.sdk.executor import Executor

T = TypeVar("T")

NOT_CONNECTED = (
    "dirk.dag is not connected: use it inside `async with dirk.connection():` or "
    "`with dirk.connection():`"
)


class SharedRunner(Runner):
    """The runner of `dag`: hands every call to the runner of the open `dirk.connection()`."""

    def __init__(self) -> None:  # no executor of its own
        self._lock = threading.Lock()
        self._current: Runner | None = None

    def bind(self, runner: Runner) -> None:
        with self._lock:
            if self._current is not None:
                raise DirkError(
                    "a dirk.connection() block is already open: dirk.dag serves one at a time; "
                    "use dirk.Connection() for independent connections"
                )
            self._current = runner

    def unbind(self, runner: Runner) -> None:
        with self._lock:
            if self._current is runner:
                self._current = None

    @property
    def current(self) -> Runner:
        runner = self._current
        if runner is None:
            raise ClientConnectionError(NOT_CONNECTED)
        return runner

    # What Runner's methods use, read from the open connection's runner: `dag`'s objects
    # belong to this runner (their object arguments resolve here), the session to that one.
    @property
    def executor(self) -> Executor:
        return self.current.executor

    @property
    def portal(self) -> BlockingPortal | None:
        return self.current.portal

    @property
    def sync(self) -> bool:
        return self.current.sync

    def run(self, fn: Callable[[], Coroutine[Any, Any, T]]) -> Coroutine[Any, Any, T] | T:
        return self.current.run(fn)  # fails now outside a block, not at `await`


#: The runner behind `dag`.
_shared = SharedRunner()

#: The global client: Dagger's `dag`. Its leaves return awaitables inside
#: `async with dirk.connection()` and values inside `with dirk.connection()`.
dag: Client[Either] = Client(_shared)


class connection:  # Dagger's name (a function there)
    """Opens a session for `dirk.dag`: `async with dirk.connection():` or `with ...:`.

    The block gives `dag` itself (`as client` is optional). Leaving it ends the session, as
    leaving a `dirk.Connection()` block does.
    """

    def __init__(self, config: Config | None = None) -> None:
        self._connection = Connection(config)
        self._runner: Runner | None = None

    def _bind(self, client: Client[Async] | Client[Sync]) -> None:
        self._runner = client._runner
        _shared.bind(self._runner)

    def _unbind(self) -> None:
        if self._runner is not None:
            _shared.unbind(self._runner)
            self._runner = None

    async def __aenter__(self) -> Client[Async]:
        client = await self._connection.__aenter__()
        try:
            self._bind(client)
        except BaseException as exc:
            await self._connection.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return cast("Client[Async]", dag)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._unbind()
        await self._connection.__aexit__(exc_type, exc, tb)

    def __enter__(self) -> Client[Sync]:
        client = self._connection.__enter__()
        try:
            self._bind(client)
        except BaseException as exc:
            self._connection.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return cast("Client[Sync]", dag)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._unbind()
        self._connection.__exit__(exc_type, exc, tb)
