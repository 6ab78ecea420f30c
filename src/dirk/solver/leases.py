"""Leases: what live sessions use, so the garbage collector leaves it alone.

Every result the solver hands to a job (from memory, from the cache or fresh) is leased to the
job's session: its cache key and every layer its outputs name, and every cache volume its
execs mounted. A session's lease ends with the session. The collector (`solver.gc`) never
evicts a leased key, never deletes a leased layer or volume, and treats what was released
after its plan was made as still leased, so a session that ends while the collector works
cannot lose an entry it wrote a moment before.

Leasing and the collector's commit both run on the event loop without awaiting in between, so
a lease taken and a deletion decided can never interleave.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import attrs

from dirk.solver.results import OpResult

#: How long released leases are remembered (longer than any collection takes).
RELEASED_MEMORY_S = 3600.0


@attrs.define(eq=False)
class Lease:
    """What one session uses: cache keys, layer ids and cache volume names."""

    holder: str
    keys: set[str] = attrs.field(factory=set)
    layers: set[str] = attrs.field(factory=set)
    volumes: set[str] = attrs.field(factory=set)

    def hold(self, result: OpResult) -> None:
        self.keys.add(result.key)
        for snapshot in result.outputs:
            self.layers.update(snapshot.layers)


@attrs.frozen
class Held:
    """Everything leased at one moment (the collector's view)."""

    keys: frozenset[str]
    layers: frozenset[str]
    volumes: frozenset[str]


class Leases:
    """The engine's leases: one per live session, plus one that is never released (the
    jobs that belong to no session: in-process tools, benchmarks, tests)."""

    def __init__(self) -> None:
        self._live: dict[str, Lease] = {}
        self._released: list[tuple[float, Lease]] = []
        self.background = self.open("background")

    def open(self, holder: str) -> Lease:
        lease = Lease(holder)
        self._live[holder] = lease
        return lease

    def release(self, lease: Lease) -> None:
        """The session ended: what it used may go, but not before a collection planned
        earlier than now has finished (see `held_since`)."""
        if self._live.pop(lease.holder, None) is not None:
            now = time.monotonic()
            self._released.append((now, lease))
            self._released = [(t, r) for t, r in self._released if now - t < RELEASED_MEMORY_S]

    def held_since(self, since: float) -> Held:
        """What live sessions hold now, with what was released after `since`
        (a `time.monotonic()` reading)."""
        leases: Iterable[Lease] = [
            *self._live.values(),
            *(lease for at, lease in self._released if at >= since),
        ]
        keys: set[str] = set()
        layers: set[str] = set()
        volumes: set[str] = set()
        for lease in leases:
            keys |= lease.keys
            layers |= lease.layers
            volumes |= lease.volumes
        return Held(frozenset(keys), frozenset(layers), frozenset(volumes))

    def __len__(self) -> int:
        """Live leases (the background one included)."""
        return len(self._live)
