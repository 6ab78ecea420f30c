"""Scratch: the empty filesystem. Its key covers nothing but the operation's type; it runs
nothing (a snapshot without layers)."""

from __future__ import annotations

from typing import ClassVar

from dirk.solver.handlers.base import Handler, Step
from dirk.solver.ops import Scratch
from dirk.solver.results import OpResult
from dirk.workers.snapshots.layers import Snapshot


class ScratchHandler(Handler[Scratch]):
    limited: ClassVar[bool] = False

    async def run(self, op: Scratch, step: Step) -> OpResult:
        return OpResult(step.key, (Snapshot(),))
