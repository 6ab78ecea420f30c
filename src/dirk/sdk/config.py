"""How a program's connection to the engine behaves."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

import attrs


def _positive(
    instance: object, attribute: attrs.Attribute[float | None], value: float | None
) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"Config.{attribute.name} must be a positive number of seconds or None")


@attrs.frozen
class Config:
    """Settings of a `dirk.Connection`.

    Attributes:
        log_output: Where to write one line per query (its call chain and duration).
        timeout: Seconds a query may run before `QueryTimeoutError`; None (the default) waits
            as long as the pipeline takes.
        workdir: The directory host paths resolve against; the current directory by default.
        engine: The engine to use: `unix:///path/engine.sock` or `http://host:port` (then
            DIRK_ENGINE_TOKEN holds its admin token). Overrides DAGGER_SESSION_* and
            DIRK_ENGINE; by default a local engine is used, started if needed.
    """

    log_output: TextIO | None = None
    timeout: float | None = attrs.field(default=None, validator=_positive)
    workdir: str | Path | None = None
    engine: str | None = None
