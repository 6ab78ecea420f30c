"""The per-session table: every object handed out (so its ID loads for the session's life),
memoised leaf results, pinned image references and the session's secrets (values in memory only).

It lives in `session.state`, so ending the session drops it. Concurrent requests of one session
asking for the same thing share one computation (clients evaluate arguments concurrently, and
re-send whole chains for every leaf).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Mapping, MutableMapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

import attrs

from dirk.api.ids import QUERY_IDENT, format_id, parse_id
from dirk.api.secret_store import SecretStore
from dirk.api.values import Handle, QueryRoot
from dirk.errors import UnknownIDError
from dirk.solver.flights import Flights
from dirk.workers.images.config import ResolvedImage

#: The key of the table in `session.state`.
STATE_KEY = "dirk.api"
#: Leaf results kept per session; the oldest are dropped first (they are only a shortcut: the
#: solver memoises by cache key too).
LEAF_LIMIT = 20_000
#: Leaf results larger than this (a big stdout, a file's contents) are not kept: the memory
#: would stay for the session's life, and the solver's cache gives them back cheaply.
LEAF_MEMO_MAX_CHARS = 1024 * 1024

T = TypeVar("T")


class SessionLike(Protocol):
    """What the API needs of a session: where host paths resolve, the environment its client
    sent (for env:// secrets), and a place for its state."""

    @property
    def workdir(self) -> Path: ...

    @property
    def client_env(self) -> Mapping[str, str]: ...

    @property
    def state(self) -> dict[str, Any]: ...


@attrs.define(eq=False)
class SessionTable:
    secrets: SecretStore
    objects: dict[str, Handle] = attrs.field(factory=dict)
    leaves: dict[Hashable, Any] = attrs.field(factory=dict)
    #: (address, platform[, registry service]) -> the image resolved once per session.
    images: dict[tuple[object, ...], ResolvedImage] = attrs.field(factory=dict)
    _flights: Flights = attrs.field(factory=Flights)

    @classmethod
    def of(cls, session: SessionLike) -> SessionTable:
        table = session.state.get(STATE_KEY)
        if not isinstance(table, SessionTable):
            # The session's owner (whose rights file:// and cmd:// secrets have), if known.
            owner = getattr(session, "owner", None)
            secrets = SecretStore(session.client_env, session.workdir, owner)
            table = session.state[STATE_KEY] = cls(secrets)
        return table

    def add(self, handle: Handle) -> Handle:
        """Remember `handle` (the first one of an identity wins) and return the kept one."""
        return self.objects.setdefault(handle.ident, handle)

    def load(self, object_id: object, expected: str | None = None) -> Handle:
        """The object an ID names; `expected` is the type it must be."""
        type_name, ident = parse_id(object_id, expected)
        if (type_name, ident) == ("Query", QUERY_IDENT):
            return Handle("Query", QUERY_IDENT, QueryRoot())
        handle = self.objects.get(ident)
        if handle is None or handle.type_name != type_name:
            raise UnknownIDError(
                f"unknown ID {format_id(type_name, ident)!r}; IDs are valid only in the "
                "session that created them"
            )
        return handle

    async def once(
        self,
        store: MutableMapping[Any, Any],
        key: Hashable,
        make: Callable[[], Awaitable[T]],
        limit: int | None = None,
    ) -> T:
        """`store[key]`, computed by `make` the first time; concurrent callers share one
        computation, and a failure is not remembered (the next call tries again)."""
        if key in store:
            return store[key]  # type: ignore[no-any-return]

        async def make_and_keep() -> T:
            value = await make()
            if limit is not None:  # a bounded memo of answers, not the table of objects
                if isinstance(value, str | bytes) and len(value) > LEAF_MEMO_MAX_CHARS:
                    return value
                if len(store) >= limit:
                    store.pop(next(iter(store)))
            store[key] = value
            return value

        return await self._flights.run((id(store), key), make_and_keep)
