"""How a program's connection to the engine behaves.

A named tuple: every program makes one, and attrs or a dataclass would add their imports to
every program's start (a dataclass: `dataclasses` and `inspect`, a tenth of a cached run).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, TextIO


class _Settings(NamedTuple):
    log_output: TextIO | None = None
    timeout: float | None = None
    workdir: str | Path | None = None
    engine: str | None = None
    progress: str | None = None
    explain: bool = False


class Config(_Settings):
    """Settings of a `dirk.Connection` (immutable: make a new one to change a setting).

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

    __slots__ = ()

    def __new__(
        cls,
        log_output: TextIO | None = None,
        timeout: float | None = None,
        workdir: str | Path | None = None,
        engine: str | None = None,
        progress: str | None = None,
        explain: bool = False,
    ) -> Config:
        if timeout is not None and timeout <= 0:
            raise ValueError("Config.timeout must be a positive number of seconds or None")
        if progress is not None:
            from dirk.progress import MODES

            if progress not in MODES:
                raise ValueError(
                    f"Config.progress must be one of {', '.join(MODES)} (or None), not {progress!r}"
                )
        return super().__new__(cls, log_output, timeout, workdir, engine, progress, explain)
