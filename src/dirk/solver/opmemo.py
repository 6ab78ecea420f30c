"""A memo keyed by operations, bounded by how many it holds and by the bytes they carry.

Operations are values, and some carry their content inline (a `with_new_file`'s contents, an
exec's stdin): a memo that holds 20,000 operations could hold gigabytes. This one evicts the
oldest entries once either bound is passed. An operation's weight is its own inline data
(bytes and strings in its fields, not its inputs': those are entries of their own).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Generic, TypeVar

import attrs

from dirk.solver.ops import Op, Ref

V = TypeVar("V")

#: Entries kept at most.
MAX_ENTRIES = 20_000
#: Inline bytes of the operations kept at most.
MAX_BYTES = 256 * 1024 * 1024


def inline_bytes(value: Any) -> int:
    """The bytes `value` carries itself: its bytes and strings, through tuples and nested
    values, not through `Ref`s (an input is weighed as its own entry)."""
    if isinstance(value, bytes | str):
        return len(value)
    if isinstance(value, Ref):
        return 0
    if isinstance(value, tuple):
        return sum(inline_bytes(v) for v in value)
    if attrs.has(type(value)):
        return sum(inline_bytes(getattr(value, f.name)) for f in attrs.fields(type(value)))
    return 0


class OpMemo(Generic[V]):
    """Values by operation, oldest evicted first past `max_entries` or `max_bytes`."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES) -> None:
        self._entries: OrderedDict[Op, tuple[V, int]] = OrderedDict()
        self._bytes = 0
        self.max_entries = max_entries
        self.max_bytes = max_bytes

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, op: Op) -> bool:
        return op in self._entries

    @property
    def weight(self) -> int:
        """The inline bytes of the operations held now."""
        return self._bytes

    def get(self, op: Op) -> V | None:
        found = self._entries.get(op)
        return None if found is None else found[0]

    def put(self, op: Op, value: V) -> None:
        old = self._entries.pop(op, None)
        if old is not None:
            self._bytes -= old[1]
        weight = inline_bytes(op)
        if weight > self.max_bytes:
            return  # kept by nobody: it would evict everything else
        self._entries[op] = (value, weight)
        self._bytes += weight
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            _, (_, dropped) = self._entries.popitem(last=False)
            self._bytes -= dropped
