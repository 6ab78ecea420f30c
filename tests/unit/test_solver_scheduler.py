"""The solver as a generic scheduler, with stand-in handlers (no mounts, no containers): deep
chains, the persistent cache, events to each job's sink, secrets from the waiting jobs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from dirk.errors import UnknownSecretError
from dirk.solver.handlers import Handler, Step, Workers
from dirk.solver.job import Job, SecretValues, StepEvent
from dirk.solver.ops import Copy, Exec, MkFile, Op, Ref, Scratch
from dirk.solver.results import OpResult
from dirk.solver.solver import Solver
from dirk.state import BlobStore, Database, StateLayout
from dirk.workers.snapshots.layers import LayerStore, Snapshot

pytestmark = pytest.mark.anyio


class Tree:
    """A stand-in filesystem: each layer is one change over a parent layer."""

    def __init__(self) -> None:
        self.layers: dict[str, tuple[str | None, dict[str, bytes]]] = {}

    def read(self, snapshot: Snapshot, path: str) -> bytes | None:
        layer: str | None = snapshot.layers[-1] if snapshot.layers else None
        while layer is not None:  # iterative, like the solver: chains are thousands deep
            parent, files = self.layers[layer]
            if path in files:
                return files[path]
            layer = parent
        return None


def fake_handler(tree: Tree, runs: list[str]) -> Callable[[Workers], Any]:
    class FakeFileHandler(Handler[Any]):
        async def run(self, op: Any, step: Step) -> OpResult:
            runs.append(step.key)
            base = step.inputs[op.base] if hasattr(op, "base") else Snapshot()
            parent = base.layers[-1] if base.layers else None
            if isinstance(op, MkFile):
                files = {op.path: op.contents}
            elif isinstance(op, Copy):
                content = tree.read(step.inputs[op.source], op.source_path)
                assert content is not None
                files = {op.dest_path: content}
            else:
                files = {}
            layer = step.key.removeprefix("sha256:")[:32]
            tree.layers[layer] = (parent, files)
            return OpResult(step.key, (Snapshot((layer,)),))

    return FakeFileHandler


class SecretReader(Handler[Exec]):
    """Runs an Exec by reading the secret named by its first argument."""

    async def run(self, op: Exec, step: Step) -> OpResult:
        step.emit("stdout", step.secret(op.args[0]))
        return OpResult(step.key, (Snapshot(),))


@pytest.fixture
def layout(tmp_path: Path) -> StateLayout:
    return StateLayout(tmp_path / "state").ensure()


def make_solver(layout: StateLayout, tree: Tree, runs: list[str]) -> Solver:
    db = Database(layout.db_path)
    layers = LayerStore(layout, db)
    handler = fake_handler(tree, runs)
    return Solver(
        db=db,
        blobs=BlobStore(layout.blobs, layout.tmp),
        layers=layers,
        snapshotter=None,  # type: ignore[arg-type]
        images=None,  # type: ignore[arg-type]
        executor=None,  # type: ignore[arg-type]
        volumes=None,  # type: ignore[arg-type]
        handlers={Scratch: handler, MkFile: handler, Copy: handler, Exec: SecretReader},
    )


@pytest.fixture
async def solver(layout: StateLayout) -> AsyncIterator[tuple[Solver, Tree, list[str]]]:
    tree, runs = Tree(), []
    s = make_solver(layout, tree, runs)
    async with s.running():
        yield s, tree, runs


def chain(steps: int) -> Ref:
    """MkFile and Copy steps, alternating; each Copy copies the file the step before wrote."""
    ref = Ref(Scratch())
    for i in range(steps):
        if i % 2 == 0:
            ref = Ref(MkFile(ref, f"/f{i}", str(i).encode()))
        else:
            ref = Ref(Copy(ref, f"/c{i}", source=ref, source_path=f"/f{i - 1}"))
    return ref


async def test_a_5000_step_chain_is_keyed_and_solved(
    solver: tuple[Solver, Tree, list[str]], layout: StateLayout
) -> None:
    s, tree, runs = solver
    top = chain(5000)
    snapshot = await s.solve(Job(), top)
    assert len(runs) == 5001  # scratch + every step, each once
    assert tree.read(snapshot, "/f0") == b"0"
    assert tree.read(snapshot, "/c4999") == b"4998"
    assert await s.solve(Job(), chain(5000)) == snapshot  # rebuilt: the same keys, memo hit
    assert len(runs) == 5001

    layers = LayerStore(layout, Database(layout.db_path))
    layers.path(snapshot.layers[-1]).mkdir()  # what the persistent cache checks before a hit
    reruns: list[str] = []
    restarted = make_solver(layout, tree, reruns)
    async with restarted.running():
        assert await restarted.solve(Job(), chain(5000)) == snapshot
    assert reruns == [] and restarted.counters.cache_hits == 1  # the top step's row suffices


async def test_step_events_reach_the_jobs_waiting_and_the_subscribers(
    solver: tuple[Solver, Tree, list[str]],
) -> None:
    s, _, _ = solver
    everything: list[StepEvent] = []
    s.subscribe(everything.append)
    mine: list[StepEvent] = []
    theirs: list[StepEvent] = []
    op = MkFile(Ref(Scratch()), "/a", b"a")
    await s.result(Job(events=mine.append), op)
    scratch_key = await s.key(Scratch())
    assert [(e.kind, e.description, e.inputs) for e in mine] == [
        ("queued", "write file /a", (scratch_key,)),  # waits for its input
        ("queued", "scratch", ()),
        ("start", "scratch", ()),
        ("done", "scratch", ()),
        ("start", "write file /a", (scratch_key,)),
        ("done", "write file /a", (scratch_key,)),
    ]
    assert everything == mine
    await s.result(Job(events=theirs.append), op)  # in memory now
    assert [(e.kind, e.inputs) for e in theirs] == [("cached", (scratch_key,))]
    # A cache hit says what the step took when it ran: what the cache saved.
    assert theirs[0].duration == mine[-1].duration > 0
    assert len(everything) == 6  # a memory hit is news only to the job that asked


async def test_a_cache_entry_keeps_the_duration_of_its_run(
    solver: tuple[Solver, Tree, list[str]], layout: StateLayout
) -> None:
    s, tree, _ = solver
    op = MkFile(Ref(Scratch()), "/d", b"d")
    ran: list[StepEvent] = []
    snapshot = await s.solve(Job(events=ran.append), Ref(op))
    LayerStore(layout, Database(layout.db_path)).path(snapshot.layers[-1]).mkdir()
    restarted = make_solver(layout, tree, [])
    hit: list[StepEvent] = []
    async with restarted.running():
        await restarted.solve(Job(events=hit.append), Ref(op))
    done = [e for e in ran if e.kind == "done" and e.description == "write file /d"]
    assert [(e.kind, e.duration) for e in hit] == [("cached", round(done[0].duration, 3))]


async def test_a_failed_step_and_the_steps_that_needed_it_are_reported(
    solver: tuple[Solver, Tree, list[str]],
) -> None:
    s, _, _ = solver
    failing = Exec(root=Ref(Scratch()), args=("missing-secret",))
    after = MkFile(Ref(failing), "/x", b"x")
    events: list[StepEvent] = []
    with pytest.raises(UnknownSecretError):
        await s.result(Job(events=events.append), after)
    kinds = [(e.kind, e.description) for e in events if e.kind in ("error", "cancelled")]
    assert kinds == [("error", "missing-secret"), ("cancelled", "write file /x")]
    assert b"missing-secret" in next(e.data for e in events if e.kind == "error")


async def test_a_step_reads_secrets_from_any_job_waiting_for_it(
    solver: tuple[Solver, Tree, list[str]],
) -> None:
    s, _, _ = solver
    step = Exec(root=Ref(Scratch()), args=("token",))
    with pytest.raises(UnknownSecretError, match="'token'"):
        await s.result(Job(), step)
    out: list[StepEvent] = []
    holder = Job(secrets=SecretValues({"token": b"s3cret"}), events=out.append)
    await s.result(holder, step)
    assert [e.data for e in out if e.kind == "stdout"] == [b"s3cret"]


async def test_an_operation_without_a_handler_is_a_clear_error(
    solver: tuple[Solver, Tree, list[str]],
) -> None:
    from dirk.errors import SolveError
    from dirk.solver.ops import MkDir

    s, _, _ = solver
    op: Op = MkDir(Ref(Scratch()), "/d")
    with pytest.raises(SolveError, match="no handler is registered for MkDir"):
        await s.result(Job(), op)
