"""The memo of operations is bounded by the bytes they carry, not only by their count: keying
pipelines with large inline files keeps memory bounded, and keys stay right under eviction."""

from __future__ import annotations

from pathlib import Path

import pytest

from dirk.solver.opmemo import OpMemo, inline_bytes
from dirk.solver.ops import Exec, MkFile, Ref, Scratch
from dirk.state import StateLayout
from tests.unit.test_solver_scheduler import Tree, make_solver

BASE = Ref(Scratch())


def test_an_operation_weighs_its_own_inline_data_not_its_inputs() -> None:
    big = MkFile(BASE, "/big", b"x" * 1000)
    assert inline_bytes(big) == 1000 + len("/big")
    on_top = MkFile(Ref(big), "/small", b"y")
    assert inline_bytes(on_top) == len("/small") + 1
    assert inline_bytes(Exec(BASE, ("sh",), stdin=b"12345")) >= 5


def test_the_oldest_entries_go_once_the_byte_bound_is_passed() -> None:
    memo: OpMemo[str] = OpMemo(max_entries=100, max_bytes=2500)
    ops = [MkFile(BASE, f"/{i}", b"x" * 1000) for i in range(5)]
    for i, op in enumerate(ops):
        memo.put(op, str(i))
    assert len(memo) == 2 and memo.weight <= 2500
    assert memo.get(ops[0]) is None and memo.get(ops[4]) == "4"
    memo.put(MkFile(BASE, "/huge", b"x" * 10_000), "never kept")
    assert len(memo) == 2


@pytest.mark.anyio
async def test_keys_are_the_same_whatever_the_memo_evicts(tmp_path: Path) -> None:
    def chain() -> Ref:
        ref = BASE
        for i in range(300):
            ref = Ref(MkFile(ref, f"/f{i}", bytes([i % 256]) * 4096))
        return ref

    roomy = make_solver(StateLayout(tmp_path / "a").ensure(), Tree(), [])
    tight = make_solver(StateLayout(tmp_path / "b").ensure(), Tree(), [])
    tight._keys = OpMemo(max_entries=10_000, max_bytes=64 * 1024)  # about 15 of the files
    expected = await roomy.key(chain().op)
    assert await tight.key(chain().op) == expected
    assert await tight.key(chain().op) == expected  # again, from a memo that kept the newest
    assert tight._keys.weight <= 64 * 1024
