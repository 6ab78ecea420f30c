"""The engine process: composition of state, workers and solver, and the daemon serving it."""

from dirk.engine.core import Engine

__all__ = ["Engine"]
