"""Shared work: identical operations asked for at once run once, in a task group the engine
keeps open, and stop only when nobody waits for them any more.

Each run (a `Flight`) is a task of the engine's task group, not of the first caller: a caller
that is cancelled (its session ended, its client gave up) only stops waiting. When the last
caller waiting for a run leaves, the run's cancel scope is cancelled (containers are killed,
mounts released, as anyio cancellation always does), that caller waits until the run has
wound down, and the key is free for the next caller, who starts afresh. A failure is handed
to every waiter and not remembered.

Who waits for a run are its members: a caller's token (a `Job`) or another flight (a step
whose input this is). `waiting(flight)` resolves that to the tokens behind it, so a step can
reach the secrets and event sinks of every request that needs it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import asynccontextmanager
from typing import Generic, TypeVar, cast

import anyio
from anyio.abc import TaskGroup

from dirk.errors import CancelledError

T = TypeVar("T")
M = TypeVar("M", bound=Hashable)


class Flight(Generic[M]):
    """One run of shared work and who waits for it."""

    __slots__ = ("_waiting", "done", "error", "finished", "key", "members", "scope", "value")

    def __init__(self, key: Hashable) -> None:
        self.key = key
        self.members: list[M | Flight[M]] = []
        self.done = anyio.Event()
        self.scope = anyio.CancelScope()
        self.value: object = None
        self.error: BaseException | None = None
        self.finished = False
        #: (epoch, tokens) of the last `waiting` answer.
        self._waiting: tuple[int, tuple[M, ...]] | None = None


class SharedWork(Generic[M]):
    """The flights under way, by key; `serving()` holds the task group they run in."""

    def __init__(self) -> None:
        self._tg: TaskGroup | None = None
        self._running: dict[Hashable, Flight[M]] = {}
        #: Bumped whenever a flight gains or loses a member (invalidates `waiting` answers).
        self._epoch = 0

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[None]:
        """Open the task group runs go to; leaving cancels the runs still going and waits."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                yield
            finally:
                self._tg = None
                tg.cancel_scope.cancel()

    @property
    def idle(self) -> bool:
        """Whether nothing runs now."""
        return not self._running

    def running(self, key: Hashable) -> bool:
        return key in self._running

    def waiters(self, key: Hashable) -> int:
        """How many members wait for the run of `key` now (0 when none runs)."""
        flight = self._running.get(key)
        return len(flight.members) if flight is not None else 0

    async def run(
        self, key: Hashable, work: Callable[[Flight[M]], Awaitable[T]], member: M | Flight[M]
    ) -> T:
        """The outcome of `work(flight)` for `key`, started now unless a run is under way."""
        flight = self._running.get(key)
        if flight is None:
            if self._tg is None:
                raise RuntimeError("the solver is not running: use `async with EngineCore(...)`")
            flight = self._running[key] = Flight(key)
            # No other flight waits for a new one yet, so no `waiting` answer changes: the
            # epoch stays (a chain of new steps then costs one step per `waiting`, not the
            # whole chain above it).
            flight.members.append(member)
            self._tg.start_soon(self._fly, flight, work)
        else:
            flight.members.append(member)
            self._epoch += 1
        try:
            await flight.done.wait()
        except BaseException:
            await self._leave(flight, member)
            raise
        if flight.finished:
            return cast(T, flight.value)
        if flight.error is not None and not isinstance(
            flight.error, anyio.get_cancelled_exc_class()
        ):
            raise flight.error
        raise CancelledError("the engine stopped before this step finished")

    def waiting(self, flight: Flight[M]) -> tuple[M, ...]:
        """The tokens waiting for `flight`, directly or through the flights that need it,
        each once, first come first. Iterative: a chain of steps may be thousands deep."""
        epoch = self._epoch
        stack: list[tuple[Flight[M], bool]] = [(flight, False)]
        while stack:
            current, expanded = stack.pop()
            if current._waiting is not None and current._waiting[0] == epoch:
                continue
            if not expanded:
                stack.append((current, True))
                stack.extend((m, False) for m in current.members if isinstance(m, Flight))
                continue
            tokens: dict[M, None] = {}
            for m in current.members:
                if isinstance(m, Flight):
                    assert m._waiting is not None
                    tokens.update(dict.fromkeys(m._waiting[1]))
                else:
                    tokens[m] = None
            current._waiting = (epoch, tuple(tokens))
        assert flight._waiting is not None
        return flight._waiting[1]

    async def _leave(self, flight: Flight[M], member: M | Flight[M]) -> None:
        """`member` stops waiting. The last one out cancels the run and waits (shielded) until
        it has wound down, so a cancelled caller's containers and mounts are gone when its
        cancellation completes."""
        flight.members.remove(member)
        self._epoch += 1
        if flight.members or flight.done.is_set():
            return
        flight.scope.cancel()
        if self._running.get(flight.key) is flight:
            del self._running[flight.key]  # the next caller starts afresh
        with anyio.CancelScope(shield=True):
            await flight.done.wait()

    async def _fly(self, flight: Flight[M], work: Callable[[Flight[M]], Awaitable[T]]) -> None:
        try:
            with flight.scope:
                flight.value = await work(flight)
                flight.finished = True
        except BaseException as exc:
            flight.error = exc
            # A failure belongs to the waiters; only cancellation of the task group itself (the
            # engine stopping) and interpreter exits may reach the task group.
            if not isinstance(exc, Exception):
                raise
        finally:
            if self._running.get(flight.key) is flight:
                del self._running[flight.key]
            flight.done.set()
