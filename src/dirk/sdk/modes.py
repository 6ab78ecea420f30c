"""The two ways to use the SDK, as type parameters.

The same generated classes serve both: a `Container[Async]` returns awaitables from its leaf
methods (`stdout`, `sync`, ...), a `Container[Sync]` blocks and returns values. The mode is
fixed by how the connection was opened (`async with` or `with`) and only exists for the type
checker; at run time the connection's runner decides. The global `dirk.dag` serves both kinds
of `dirk.connection()` block: its objects are of the mode `Either`, whose leaves are typed `Any`.
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


@final
class Either(Mode):
    """The mode of `dirk.dag`: that of the `dirk.connection()` block a leaf runs in (awaitable
    in `async with`, a value in `with`); leaf methods are typed `Any`."""


#: The mode a generated class is parameterised with; also what helpers written for both modes
#: use: `def base(client: dirk.Client[dirk.M]) -> dirk.Container[dirk.M]`.
M = TypeVar("M", bound=Mode)
