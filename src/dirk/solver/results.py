"""What solving an operation yields, and the solver's counters."""

from __future__ import annotations

import attrs

from dirk.workers.executor.spec import combine
from dirk.workers.snapshots.layers import Snapshot


@attrs.frozen
class ExecOutcome:
    exit_code: int
    stdout: bytes
    stderr: bytes
    #: Arrival order of the output: runs of (0 = stdout, 1 = stderr; byte count).
    order: tuple[tuple[int, int], ...] = ()

    @property
    def combined(self) -> bytes:
        """stdout and stderr interleaved as the command wrote them."""
        return combine(self.stdout, self.stderr, self.order)


@attrs.frozen
class OpResult:
    """The outputs of one operation (numbered as its `Ref`s number them) under its cache key;
    `exec` for an Exec; `cached` when loaded from the persistent cache; `duration` the
    seconds the step took when it ran (kept with the cache entry: a cache hit saved that)."""

    key: str
    outputs: tuple[Snapshot, ...]
    exec: ExecOutcome | None = None
    cached: bool = False
    duration: float = 0.0


@attrs.define
class Counters:
    """What the solver did, for tests and benchmarks: executed work vs cache hits."""

    executed: int = 0
    execs: int = 0
    cache_hits: int = 0
    memo_hits: int = 0
    joined: int = 0
    #: Service instances started (`solver.services`).
    services_started: int = 0
