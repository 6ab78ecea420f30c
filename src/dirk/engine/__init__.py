"""The engine process: composition of state, workers and solver, and the daemon serving it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dirk.engine.core import EngineCore

__all__ = ["EngineCore"]


def __getattr__(name: str) -> Any:
    # Lazy, so that importing `dirk.engine.sessions` does not load every worker.
    if name == "EngineCore":
        from dirk.engine.core import EngineCore

        return EngineCore
    raise AttributeError(name)
