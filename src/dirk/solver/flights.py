"""Single flight within one caller's world: identical work asked for at once runs once, the
other callers wait for it. The API's per-session memo uses it (all callers are one session's
requests); steps shared between jobs use `solver.shared`, whose runs live in the engine.

When the caller running the work is cancelled (its session ended), the work is not done, and
the waiters did not ask for a cancellation: the first waiter to wake runs the work itself. A
failure is handed to every waiter and not remembered, so the next call tries again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from typing import TypeVar, cast

import anyio

T = TypeVar("T")


class _Flight:
    def __init__(self) -> None:
        self.done = anyio.Event()
        self.value: object = None
        self.error: BaseException | None = None


class Flights:
    """The runs of work under way, by key."""

    def __init__(self) -> None:
        self._running: dict[Hashable, _Flight] = {}

    def running(self, key: Hashable) -> bool:
        return key in self._running

    async def run(self, key: Hashable, work: Callable[[], Awaitable[T]]) -> T:
        """`await work()`, unless a run for `key` is under way: then its outcome."""
        cancelled = anyio.get_cancelled_exc_class()
        while (flight := self._running.get(key)) is not None:
            await flight.done.wait()
            if flight.error is None:
                return cast(T, flight.value)
            if not isinstance(flight.error, cancelled):
                raise flight.error
        flight = self._running[key] = _Flight()
        try:
            value = await work()
        except BaseException as exc:
            flight.error = exc
            raise
        else:
            flight.value = value
            return value
        finally:
            del self._running[key]
            flight.done.set()
