"""Why a step ran again: the difference from the most similar earlier run at its position,
in the words a user wrote the pipeline with."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dirk.solver.explain import StepRun, StepRuns, explain, position_of
from dirk.solver.job import Job, StepEvent
from dirk.solver.ops import Exec, ImagePull, MkFile, Ref, Scratch
from dirk.solver.solver import Solver
from dirk.state import Database, StateLayout
from tests.unit.test_solver_scheduler import Tree, make_solver

BASE = Ref(Scratch())


@pytest.fixture
def runs(tmp_path: Path) -> StepRuns:
    layout = StateLayout(tmp_path / "state").ensure()
    return StepRuns(Database(layout.db_path))


def run(runs: StepRuns, op: Exec | MkFile | ImagePull, key: str, inputs: list[str]) -> StepRun:
    return runs.run_of(op, key, inputs, ["pull busybox:latest"] * len(inputs))


def test_a_changed_env_value_is_named_with_both_values(runs: StepRuns) -> None:
    before = Exec(BASE, ("go", "test", "./..."), env=("GOFLAGS=-v", "CI=1"))
    after = Exec(BASE, ("go", "test", "./..."), env=("GOFLAGS=-race", "CI=1"))
    assert runs.position(before) == runs.position(after)
    why = explain(run(runs, after, "k2", ["b"]), [run(runs, before, "k1", ["b"])])
    assert why == "env GOFLAGS changed: '-v' → '-race'"


def test_a_changed_argument_an_added_variable_and_a_changed_parent(runs: StepRuns) -> None:
    before = Exec(BASE, ("go", "test", "./..."))
    after = Exec(BASE, ("go", "test", "-run", "X"), env=("A=1",))
    why = explain(run(runs, after, "k2", ["new"]), [run(runs, before, "k1", ["old"])])
    assert "command changed: 'go test ./...' → 'go test -run X'" in why
    assert "env A added: '1'" in why
    assert "input `pull busybox:latest` changed" in why


def test_the_base_image_digest(runs: StepRuns) -> None:
    before = ImagePull("busybox:latest", "sha256:" + "a" * 64)
    after = ImagePull("busybox:latest", "sha256:" + "b" * 64)
    assert runs.position(before) == runs.position(after)
    why = explain(run(runs, after, "k2", []), [run(runs, before, "k1", [])])
    assert why == (
        "base image busybox:latest digest changed: sha256:aaaaaaaaaaaa → sha256:bbbbbbbbbbbb"
    )


def test_files_by_path_from_the_handler(runs: StepRuns) -> None:
    op = MkFile(BASE, "/x", b"")
    files = {"file src/a.py": "sha256:1", "file src/b.py": "sha256:2", "file old.txt": "x"}
    before = runs.run_of(op, "k1", ["b"], ["scratch"], files)
    changed = {"file src/a.py": "sha256:1", "file src/b.py": "sha256:9", "file new.txt": "y"}
    after = runs.run_of(op, "k2", ["b"], ["scratch"], changed)
    assert explain(after, [before]) == (
        "file removed: old.txt; file added: new.txt; file changed: src/b.py"
    )


def test_first_runs_and_reruns_of_the_same_inputs(runs: StepRuns) -> None:
    op = Exec(BASE, ("true",))
    assert explain(run(runs, op, "k1", ["b"]), []).startswith("first run of this step")
    again = explain(run(runs, op, "k1", ["b"]), [run(runs, op, "k1", ["b"])])
    assert again.startswith("same inputs as an earlier run")


def test_siblings_at_one_position_are_told_apart_by_similarity(runs: StepRuns) -> None:
    lint = Exec(BASE, ("sh", "-c", "make lint"))
    test = Exec(BASE, ("sh", "-c", "make test"), env=("V=1",))
    assert runs.position(lint) == runs.position(test)
    test_now = Exec(BASE, ("sh", "-c", "make test"), env=("V=2",))
    earlier = [run(runs, lint, "k1", ["b"]), run(runs, test, "k2", ["b"])]
    assert explain(run(runs, test_now, "k3", ["b"]), earlier) == "env V changed: '1' → '2'"


def test_records_are_kept_per_position_newest_first_and_bounded(runs: StepRuns) -> None:
    op = Exec(BASE, ("true",))
    position = runs.position(op)
    for i in range(10):
        runs.record(position, StepRun(f"k{i}", {"command": str(i)}))
    kept = runs.earlier(position)
    assert [r.key for r in kept][:1] == ["k9"] and len(kept) == 4


def test_a_deep_chain_is_positioned_without_recursion(runs: StepRuns) -> None:
    ref = BASE
    for i in range(5000):
        ref = Ref(MkFile(ref, f"/f{i}", b""))
    assert len(runs.position(ref.op)) == 32


@given(st.text(max_size=20), st.text(max_size=20))
def test_positions_do_not_depend_on_values(a: str, b: str) -> None:
    one = Exec(BASE, ("sh", "-c", a), env=(f"X={a}",))
    two = Exec(BASE, ("sh", "-c", b), env=(f"X={b}",))
    assert position_of(one, ["p"]) == position_of(two, ["p"])
    assert position_of(one, ["p"]) != position_of(one, ["q"])


@pytest.fixture
async def solver(tmp_path: Path) -> AsyncIterator[Solver]:
    layout = StateLayout(tmp_path / "state").ensure()
    s = make_solver(layout, Tree(), [])
    async with s.running():
        yield s


@pytest.mark.anyio
async def test_a_job_that_asks_hears_why_each_missed_step_ran(solver: Solver) -> None:
    await solver.result(Job(), MkFile(BASE, "/a", b"one"))
    told: list[StepEvent] = []
    await solver.result(Job(explain=True, events=told.append), MkFile(BASE, "/a", b"two"))
    explained = [(e.description, e.data.decode()) for e in told if e.kind == "explain"]
    assert len(explained) == 1 and explained[0][0] == "write file /a"
    assert explained[0][1].startswith("contents changed: 'sha256:") and "→" in explained[0][1]
    silent: list[StepEvent] = []
    await solver.result(Job(events=silent.append), MkFile(BASE, "/a", b"three"))
    assert "explain" not in [e.kind for e in silent]
