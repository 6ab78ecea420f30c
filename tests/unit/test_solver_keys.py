"""Cache keys cover content and definition, never provenance."""

from __future__ import annotations

import attrs

from dirk.solver.keys import cache_key
from dirk.solver.ops import Exec, ExecMount, HostDirectory, ImagePull, MkFile, Ref, Scratch


def key(op: object, *inputs: str) -> str:
    return cache_key(op, list(inputs))  # type: ignore[arg-type]


def test_same_definition_same_key_and_any_change_changes_it() -> None:
    root = Ref(Scratch())
    base = Exec(root=root, args=("echo", "hi"), env=("A=1",))
    assert key(base, "k-root") == key(Exec(root=root, args=("echo", "hi"), env=("A=1",)), "k-root")
    variants = [
        attrs.evolve(base, args=("echo", "ho")),
        attrs.evolve(base, env=("A=2",)),
        attrs.evolve(base, cwd="/tmp"),
        attrs.evolve(base, user="nobody"),
        attrs.evolve(base, expect="ANY"),
        attrs.evolve(base, mounts=(ExecMount("/c", kind="cache", cache_id="x"),)),
    ]
    keys = {key(v, "k-root") for v in variants}
    assert len(keys) == len(variants) and key(base, "k-root") not in keys
    assert key(base, "k-root") != key(base, "k-other-root")


def test_provenance_is_not_in_the_key() -> None:
    a = HostDirectory("/home/a/project", digest="sha256:" + "1" * 64)
    b = HostDirectory("/srv/elsewhere", digest="sha256:" + "1" * 64)
    assert key(a) == key(b)
    assert key(a) != key(attrs.evolve(a, digest="sha256:" + "2" * 64))
    tag = ImagePull("reg/busybox:latest", "sha256:" + "3" * 64)
    pinned = ImagePull("reg/busybox@sha256:" + "3" * 64, "sha256:" + "3" * 64)
    assert key(tag) == key(pinned)


def test_file_contents_are_hashed_not_embedded() -> None:
    big = b"x" * 1_000_000
    op = MkFile(Ref(Scratch()), "/f", big)
    k = key(op, "k")
    assert len(k) == len("sha256:") + 64
    assert k != key(attrs.evolve(op, contents=big + b"y"), "k")


def test_mount_sources_are_inputs_in_order() -> None:
    src1, src2 = Ref(Scratch()), Ref(MkFile(Ref(Scratch()), "/f", b""))
    op = Exec(
        root=Ref(Scratch()),
        args=("true",),
        mounts=(ExecMount("/a", source=src1), ExecMount("/b", source=src2)),
    )
    assert op.inputs() == (op.root, src1, src2)
    assert key(op, "r", "s1", "s2") != key(op, "r", "s2", "s1")
    assert [m.target for m in op.output_mounts()] == ["/a", "/b"]


def test_volatile_variable_values_stay_out_of_the_key_names_do_not() -> None:
    root = Ref(Scratch())
    base = Exec(root=root, args=("env",), volatile_env=(("V", "one"),))
    assert key(base, "k") == key(attrs.evolve(base, volatile_env=(("V", "two"),)), "k")
    assert key(base, "k") != key(attrs.evolve(base, volatile_env=(("W", "one"),)), "k")
    # No volatile variables: the key is what it was before the field existed.
    plain = Exec(root=root, args=("env",))
    assert key(plain, "k") != key(base, "k")
