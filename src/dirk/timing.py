"""Where the time of a request goes, measured only when asked (`DIRK_TIMING=1` in the engine's
environment): named `time.monotonic()` marks that the wire server sends back with the answer
(`extensions.timing`, a list of `[name, seconds]`). The clock is the system's monotonic clock,
so a client on the same host can set its own timestamps beside the engine's.

When it is off (the default), `mark` is one global check. Marks of queries that run at the same
time mix: it is a tool for benchmarks that send one query at a time (`bench/latency.py`).
"""

from __future__ import annotations

import os
import time

ENV = "DIRK_TIMING"
#: Read once at import: flipping the variable later has no effect on a running engine.
ENABLED = os.environ.get(ENV, "") not in ("", "0")

_marks: list[tuple[str, float]] = []


def mark(name: str) -> None:
    """Records `name` at the current time, when timing is on."""
    if ENABLED:
        _marks.append((name, time.monotonic()))


def start() -> None:
    """Forgets earlier marks: a new query begins."""
    if ENABLED:
        _marks.clear()


def collected() -> list[list[str | float]]:
    """The marks since `start`, oldest first."""
    return [[name, at] for name, at in _marks]
