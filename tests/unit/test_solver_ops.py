"""Operations as values: equal definitions are equal, whatever built them, at any depth."""

from __future__ import annotations

import gc
import weakref

from dirk.solver.ops import Exec, ExecMount, MkFile, Ref, Scratch


def chain(steps: int, last: bytes = b"x") -> Ref:
    ref = Ref(Scratch())
    for i in range(steps):
        ref = Ref(MkFile(ref, f"/f{i}", last if i == steps - 1 else b"x"))
    return ref


def test_chains_built_twice_are_equal_at_any_depth() -> None:
    first, second = chain(5000), chain(5000)
    assert first == second and hash(first) == hash(second)
    assert {first.op: "key"}.get(second.op) == "key"
    assert chain(5000, last=b"y") != first


def test_equality_covers_every_input() -> None:
    def file(contents: bytes) -> Ref:
        return Ref(MkFile(Ref(Scratch()), "/a", contents))

    assert file(b"1") == file(b"1") and file(b"1") != file(b"2")
    assert Ref(file(b"1").op, 1) != file(b"1")

    def mounting(source: Ref) -> Exec:
        return Exec(file(b"1"), ("true",), mounts=(ExecMount("/m", source=source),))

    assert mounting(file(b"2")) == mounting(file(b"2"))
    assert mounting(file(b"2")) != mounting(file(b"3"))


def test_operations_nobody_uses_are_freed() -> None:
    ref = chain(3)
    op = weakref.ref(ref.op)
    del ref
    gc.collect()
    assert op() is None
