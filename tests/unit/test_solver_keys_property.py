"""Property: a key is a function of the definition alone (rebuilt chains key the same), and
changing any field of any step, at any depth, changes the key at the top of the chain."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from dirk.solver.ops import Copy, Exec, ImagePull, MkDir, MkFile, Op, Ref, Remove, Scratch
from dirk.solver.solver import Solver

paths = st.text("abc/._-", min_size=1, max_size=12).map(lambda p: "/" + p)
words = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=8)
word_tuples = st.lists(words, max_size=3).map(tuple)

#: Per operation type: a strategy for each field that is not an input.
FIELDS: dict[type[Any], dict[str, st.SearchStrategy[Any]]] = {
    MkFile: {
        "path": paths,
        "contents": st.binary(max_size=16),
        "mode": st.integers(0, 0o7777),
        "uid": st.integers(0, 70000),
        "gid": st.integers(0, 70000),
    },
    MkDir: {"path": paths, "mode": st.integers(0, 0o7777)},
    Remove: {"path": paths, "allow_missing": st.booleans()},
    Copy: {
        "dest_path": paths,
        "source_path": paths,
        "include": word_tuples,
        "exclude": word_tuples,
        "owner": words,
        "mode": st.none() | st.integers(0, 0o7777),
    },
    Exec: {
        "args": st.lists(words, min_size=1, max_size=3).map(tuple),
        "env": word_tuples,
        "cwd": paths,
        "user": words,
        "hostname": words,
        "stdin": st.none() | st.binary(max_size=8),
        "expect": st.sampled_from(["SUCCESS", "FAILURE", "ANY"]),
        "network": st.booleans(),
        "insecure_root_capabilities": st.booleans(),
        "redirect_stdout": words,
        "redirect_stderr": words,
    },
}

Spec = tuple[type[Any], dict[str, Any]]


@st.composite
def step_specs(draw: st.DrawFn) -> Spec:
    kind = draw(st.sampled_from(sorted(FIELDS, key=lambda t: t.__name__)))
    return kind, {name: draw(strategy) for name, strategy in FIELDS[kind].items()}


def build(specs: list[Spec], image_digest: str) -> Op:
    """A chain of the steps in `specs` on an image; a Copy copies from the image itself."""
    image = Ref(ImagePull("reg.local/base:1", image_digest))
    ref = image
    op: Op = Scratch()
    for kind, fields in specs:
        if kind is Exec:
            op = Exec(root=ref, **fields)
        elif kind is Copy:
            op = Copy(ref, source=image, **fields)
        else:
            op = kind(ref, **fields)
        ref = Ref(op)
    return op


def fresh_solver() -> Solver:
    return Solver(  # keys need no workers, only the handlers' key rules
        db=None,  # type: ignore[arg-type]
        blobs=None,  # type: ignore[arg-type]
        layers=None,  # type: ignore[arg-type]
        snapshotter=None,  # type: ignore[arg-type]
        images=None,  # type: ignore[arg-type]
        executor=None,  # type: ignore[arg-type]
        volumes=None,  # type: ignore[arg-type]
    )


def keys_of(*ops: Op) -> list[str]:
    """The key of each op, each by a solver of its own (nothing remembered in between)."""

    async def keys() -> list[str]:
        return [await fresh_solver().key(op) for op in ops]

    return asyncio.run(keys())


DIGEST = "sha256:" + "1" * 64


@settings(max_examples=60, deadline=None)
@given(st.lists(step_specs(), min_size=1, max_size=6))
def test_rebuilding_a_chain_gives_the_same_key(specs: list[Spec]) -> None:
    first, again = keys_of(build(specs, DIGEST), build(specs, DIGEST))
    assert first == again


@settings(max_examples=150, deadline=None)
@given(st.lists(step_specs(), min_size=1, max_size=6), st.data())
def test_any_changed_field_at_any_depth_changes_the_top_key(
    specs: list[Spec], data: st.DataObject
) -> None:
    index = data.draw(st.integers(0, len(specs) - 1), label="step")
    kind, fields = specs[index]
    name = data.draw(st.sampled_from(sorted(fields)), label="field")
    new = data.draw(FIELDS[kind][name].filter(lambda v: v != fields[name]), label="value")
    changed = [*specs[:index], (kind, {**fields, name: new}), *specs[index + 1 :]]
    before, after = keys_of(build(specs, DIGEST), build(changed, DIGEST))
    assert before != after


@settings(max_examples=30, deadline=None)
@given(st.lists(step_specs(), min_size=1, max_size=4))
def test_the_image_digest_is_covered_and_its_tag_is_not(specs: list[Spec]) -> None:
    top, other_digest = keys_of(build(specs, DIGEST), build(specs, "sha256:" + "2" * 64))
    assert top != other_digest
    tag, other_tag = keys_of(
        ImagePull("reg.local/base:1", DIGEST), ImagePull("reg.local/base:other", DIGEST)
    )
    assert tag == other_tag
