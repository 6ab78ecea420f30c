"""How a program's connection to the engine behaves (a dataclass: attrs costs a program's
start more than this class is worth)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TextIO


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings of a `dirk.Connection`.

    Attributes:
        log_output: Where to write the pipeline's progress as plain lines: one per step
            started, cached, done or failed, and one per line of its output (as
            `dirk run --progress plain` shows it).
        timeout: Seconds a query may run before `QueryTimeoutError`; None (the default) waits
            as long as the pipeline takes.
        workdir: The directory host paths resolve against; the current directory by default.
        engine: The engine to use: `unix:///path/engine.sock` or `http://host:port` (then
            DIRK_ENGINE_TOKEN holds its admin token). Overrides DAGGER_SESSION_* and
            DIRK_ENGINE; by default a local engine is used, started if needed.
        progress: The view shown on stderr while the pipeline runs: "auto" (live when stderr
            is a terminal and CI is not set, else plain), "tty", "plain" or "quiet"; None
            (the default) takes DIRK_PROGRESS, else shows nothing.
        explain: Each step that misses the cache says why in the progress view (which input
            changed since the last run of that pipeline position: an argument, an env value,
            a file, the base image, a parent step), as `dirk run --explain` does. A session
            joined from `dirk run` keeps what `dirk run` chose.
    """

    log_output: TextIO | None = None
    timeout: float | None = None
    workdir: str | Path | None = None
    engine: str | None = None
    progress: str | None = None
    explain: bool = False

    def __post_init__(self) -> None:
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError("Config.timeout must be a positive number of seconds or None")
        if self.progress is not None:
            from dirk.progress import MODES

            if self.progress not in MODES:
                raise ValueError(
                    f"Config.progress must be one of {', '.join(MODES)} (or None), "
                    f"not {self.progress!r}"
                )
