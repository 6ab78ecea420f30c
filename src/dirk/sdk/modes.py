"""The two ways to use the SDK, as type parameters.

The same generated classes serve both: a `Container[Async]` returns awaitables from its leaf
methods (`stdout`, `sync`, ...), a `Container[Sync]` blocks and returns values. The mode is
fixed by how the connection was opened (`async with` or `with`) and only exists for the type
checker; at run time the connection's runner decides.
"""

from __future__ import annotations

from typing import TypeVar, final


class Mode:
    """Base of the two mode markers; never instantiated."""


@final
class Async(Mode):
    """Leaf methods return coroutines: `await container.stdout()`."""


@final
class Sync(Mode):
    """Leaf methods block and return the value: `container.stdout()`."""


#: The mode a generated class is parameterised with; also what helpers written for both modes
#: use: `def base(client: dirk.Client[dirk.M]) -> dirk.Container[dirk.M]`.
M = TypeVar("M", bound=Mode)
