"""Client sessions: who may query the engine, and the per-session state the API keeps.

A session is what a token names. It lives from `POST /sessions` until `DELETE /sessions/<t>`
(or the engine stops); its IDs are valid only while it lives, so ending it clears its state,
cancels its queries still running and runs the cleanups the API registered (stopping services).

A client may also hold "attach" connections to its session (`GET /sessions/<t>/attach`): when
the last one drops (the kernel closes the socket of a killed program), the session ends as if
deleted, so a SIGKILLed program leaks neither its memo nor its running containers. A session
that never attached lives until DELETE, as plain HTTP clients expect.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from dirk.engine.event_hub import EventHub
from dirk.engine.terminals import SessionTerminals
from dirk.solver.job import EventSink
from dirk.workers.hostaccess import HostUser

log = logging.getLogger(__name__)

#: An async callback run once when its session ends.
Cleanup = Callable[[], Awaitable[None]]


@attrs.define(eq=False)
class Session:
    """One client's session: its token, the host directory its relative paths resolve against,
    its labels (SDK name and version), the environment its client sent (read by env://
    secrets; in memory only, never logged) and the storage the API layer owns (IDs, memo)."""

    token: str
    workdir: Path
    labels: dict[str, str]
    created: float
    client_env: dict[str, str] = attrs.field(factory=dict, repr=False)
    #: Whose rights the session's host access has: the user who opened it (see `wire.server`).
    owner: HostUser = attrs.field(factory=HostUser.engine)
    state: dict[str, Any] = attrs.field(factory=dict)
    ended: bool = False
    #: Attach connections open now (see `SessionRegistry.attach`).
    attached: int = 0
    #: Where this session's step events go: its hub, which streams them to the viewers
    #: subscribed (`GET /sessions/<token>/events`).
    hub: EventHub = attrs.field(factory=EventHub, repr=False)
    #: Whether its steps that miss the cache say why (`dirk run --explain`, `solver.explain`).
    explain: bool = False
    #: The terminal a client holds for the session (`Container.terminal`, `dirk run -i`).
    terminals: SessionTerminals = attrs.field(factory=SessionTerminals, repr=False)
    #: The engine's TCP port the session is reachable on (0: none; nested commands need it).
    engine_port: int = 0
    _ended_event: asyncio.Event = attrs.field(factory=asyncio.Event, repr=False)
    _tasks: set[asyncio.Task[Any]] = attrs.field(factory=set, repr=False)
    _cleanups: list[Cleanup] = attrs.field(factory=list, repr=False)

    @property
    def events(self) -> EventSink:
        """The sink of this session's jobs (`RequestContext.job`)."""
        return self.hub.publish

    def add_cleanup(self, cleanup: Cleanup) -> None:
        """Run `cleanup` when the session ends (e.g. stop a service it started)."""
        self._cleanups.append(cleanup)

    def track(self, task: asyncio.Task[Any]) -> None:
        """Register a running query, so ending the session cancels it."""
        self._tasks.add(task)

    def untrack(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)

    @property
    def running(self) -> int:
        """How many queries of this session are being evaluated now."""
        return len(self._tasks)

    async def wait_ended(self) -> None:
        """Returns once the session has ended."""
        await self._ended_event.wait()

    async def _end(self) -> None:
        self.ended = True
        self._ended_event.set()
        for task in list(self._tasks):
            task.cancel("session ended")
        cleanups, self._cleanups = self._cleanups, []
        for cleanup in reversed(cleanups):
            try:
                await cleanup()
            except Exception:
                log.exception("cleanup of session %s failed", self.token[:8])
        self.state.clear()
        self.hub.close()


#: Why a session ended, as the engine log says it.
ENDED_BY_CLIENT = "its client ended it"
CLIENT_WENT_AWAY = "its client went away"
ENGINE_STOPPING = "the engine is stopping"


class SessionRegistry:
    """The live sessions of one engine, by token."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._sessions: dict[str, Session] = {}
        self._clock = clock
        #: Sessions being ended because their client went away (kept referenced until done).
        self._ending: set[asyncio.Task[None]] = set()

    def create(
        self,
        workdir: Path,
        labels: Mapping[str, str],
        env: Mapping[str, str] | None = None,
        owner: HostUser | None = None,
        *,
        explain: bool = False,
        engine_port: int = 0,
    ) -> Session:
        token = secrets.token_urlsafe(32)
        session = Session(
            token=token,
            workdir=workdir,
            labels=dict(labels),
            created=self._clock(),
            client_env=dict(env or {}),
            owner=owner or HostUser.engine(),
            explain=explain,
            engine_port=engine_port,
        )
        self._sessions[token] = session
        log.info(
            "session %s started (uid %d, workdir %s, labels %s)",
            token[:8],
            session.owner.uid,
            workdir,
            session.labels,
        )
        return session

    def get(self, token: str) -> Session | None:
        return self._sessions.get(token)

    def all(self) -> list[Session]:
        """The live sessions, oldest first."""
        return list(self._sessions.values())

    async def end(self, token: str, reason: str = ENDED_BY_CLIENT) -> None:
        """End the session `token` names; unknown tokens are ignored (ending is idempotent)."""
        session = self._sessions.pop(token, None)
        if session is None:
            return
        await session._end()
        log.info(
            "session %s ended: %s (after %.1f s)",
            token[:8],
            reason,
            self._clock() - session.created,
        )

    def attach(self, session: Session) -> None:
        """Count one more attach connection of `session`."""
        session.attached += 1

    def detach(self, session: Session) -> asyncio.Task[None] | None:
        """Count one attach connection of `session` gone; the last one going ends the session.

        The end runs as a task of its own: the caller is often a request handler being torn
        down (its connection lost) that must not be the one awaiting the cleanups.
        """
        session.attached -= 1
        if (
            session.attached > 0
            or session.ended
            or self._sessions.get(session.token) is not session
        ):
            return None
        task = asyncio.get_running_loop().create_task(
            self.end(session.token, CLIENT_WENT_AWAY), name=f"end session {session.token[:8]}"
        )
        self._ending.add(task)
        task.add_done_callback(self._ending.discard)
        return task

    async def end_all(self) -> None:
        for token in list(self._sessions):
            await self.end(token, ENGINE_STOPPING)
        if self._ending:  # sessions whose clients went away just before: finish their cleanups
            await asyncio.gather(*self._ending, return_exceptions=True)

    def __len__(self) -> int:
        return len(self._sessions)
