"""Two ways to run the client's coroutines: on the caller's event loop, or to their end at once.

The SDK's client code (provisioning, sessions, queries) is written once, as coroutines that do
their waiting through an `IO`. `ANYIO` waits on the running event loop (async programs, `async
with dirk.Connection()`). `BLOCKING` blocks the calling thread instead: its coroutines never
suspend, so `drive` runs one to its end without any event loop, and a plain `with` program
never imports asyncio or starts a thread for one. Ctrl-C then interrupts the blocking socket
call itself: the exception unwinds the coroutine, whose cleanups close what it had open.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class SuspendedError(RuntimeError):
    """A coroutine run by `drive` tried to wait on an event loop (a bug: blocking-mode code
    must wait through `BLOCKING`)."""


def drive(coroutine: Coroutine[Any, Any, T]) -> T:
    """Runs a coroutine that never suspends to its end and returns its value."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coroutine.close()
    raise SuspendedError(
        "a blocking-mode dirk call tried to wait on an event loop; please report this bug"
    )


class IO(Protocol):
    """How the client's coroutines wait."""

    #: True: calls block the thread and coroutines never suspend (run them with `drive`).
    blocking: bool

    async def sleep(self, seconds: float) -> None: ...

    async def call_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Runs a blocking function (in a worker thread on an event loop)."""
        ...

    async def gather(self, fns: Sequence[Callable[[], Coroutine[Any, Any, Any]]]) -> None:
        """Runs the coroutine functions concurrently; raises the first failure."""
        ...

    def shielded(self) -> contextlib.AbstractContextManager[Any]:
        """A block that a cancellation of the surrounding task does not interrupt."""
        ...


class _Blocking:
    blocking = True

    async def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    async def call_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        return fn(*args)

    async def gather(self, fns: Sequence[Callable[[], Coroutine[Any, Any, Any]]]) -> None:
        if len(fns) == 1:
            await fns[0]()
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(min(len(fns), 16), thread_name_prefix="dirk-sdk") as pool:
            futures = [pool.submit(_drive_call, fn) for fn in fns]
            errors = [f.exception() for f in futures]
        for error in errors:
            if error is not None:
                raise error

    def shielded(self) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()  # nothing cancels a blocking call but Ctrl-C


class _Anyio:
    blocking = False

    async def sleep(self, seconds: float) -> None:
        import anyio

        await anyio.sleep(seconds)

    async def call_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        import anyio.to_thread

        return await anyio.to_thread.run_sync(fn, *args, abandon_on_cancel=True)

    async def gather(self, fns: Sequence[Callable[[], Coroutine[Any, Any, Any]]]) -> None:
        if len(fns) == 1:
            await fns[0]()
            return
        import anyio

        try:
            async with anyio.create_task_group() as group:
                for fn in fns:
                    group.start_soon(fn)
        except BaseExceptionGroup as failures:
            raise _first_error(failures) from None

    def shielded(self) -> contextlib.AbstractContextManager[Any]:
        import anyio

        return anyio.CancelScope(shield=True)


def _drive_call(fn: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return drive(fn())


def _first_error(group: BaseExceptionGroup[Any]) -> BaseException:
    first = group.exceptions[0]
    return _first_error(first) if isinstance(first, BaseExceptionGroup) else first


BLOCKING: IO = _Blocking()
ANYIO: IO = _Anyio()
