"""Leases: what live sessions hold, and what a collection planned at some moment must still
treat as held. The clock is a fake one (no test relies on timing)."""

from __future__ import annotations

import types

import pytest

from dirk.solver import leases as leases_module
from dirk.solver.leases import RELEASED_MEMORY_S, Leases
from dirk.solver.results import OpResult
from dirk.workers.snapshots.layers import Snapshot


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(leases_module, "time", types.SimpleNamespace(monotonic=fake.monotonic))
    return fake


def result(key: str, *outputs: tuple[str, ...]) -> OpResult:
    return OpResult(key, tuple(Snapshot(layers) for layers in outputs))


def test_a_lease_holds_the_key_and_every_layer_of_the_result(clock: Clock) -> None:
    leases = Leases()
    lease = leases.open("session-1")
    lease.hold(result("k1", ("base", "top"), ("base", "other")))
    lease.volumes.add("go-build")
    held = leases.held_since(clock.now)
    assert held.keys == {"k1"}
    assert held.layers == {"base", "top", "other"}
    assert held.volumes == {"go-build"}


def test_what_live_sessions_hold_adds_up(clock: Clock) -> None:
    leases = Leases()
    leases.open("a").hold(result("ka", ("l1",)))
    leases.open("b").hold(result("kb", ("l2",)))
    held = leases.held_since(clock.now)
    assert held.keys == {"ka", "kb"}
    assert held.layers == {"l1", "l2"}
    assert len(leases) == 3  # the background lease, and two sessions


def test_a_lease_released_after_a_plan_was_made_still_counts(clock: Clock) -> None:
    leases = Leases()
    lease = leases.open("session")
    lease.hold(result("k", ("layer",)))
    planned_at = clock.now
    clock.now += 5
    leases.release(lease)
    assert len(leases) == 1
    held = leases.held_since(planned_at)
    assert held.keys == {"k"}
    assert held.layers == {"layer"}
    # Released at the very moment the plan was made: still held.
    assert leases.held_since(clock.now).keys == {"k"}


def test_a_lease_released_before_a_plan_was_made_does_not(clock: Clock) -> None:
    leases = Leases()
    lease = leases.open("session")
    lease.hold(result("k", ("layer",)))
    leases.release(lease)
    clock.now += 5
    held = leases.held_since(clock.now)
    assert held.keys == frozenset()
    assert held.layers == frozenset()
    assert held.volumes == frozenset()


def test_releasing_twice_changes_nothing(clock: Clock) -> None:
    leases = Leases()
    lease = leases.open("session")
    lease.hold(result("k"))
    leases.release(lease)
    clock.now += 10
    leases.release(lease)  # a second release must not renew it
    assert leases.held_since(clock.now - 5).keys == frozenset()


def test_released_leases_are_forgotten_after_a_while(clock: Clock) -> None:
    leases = Leases()
    old = leases.open("old")
    old.hold(result("k-old"))
    leases.release(old)
    released_at = clock.now
    clock.now += RELEASED_MEMORY_S + 1
    new = leases.open("new")
    new.hold(result("k-new"))
    leases.release(new)
    # Even a collection planned before both were released no longer sees the old one.
    assert leases.held_since(released_at - 1).keys == {"k-new"}


def test_the_background_lease_outlives_every_session(clock: Clock) -> None:
    leases = Leases()
    leases.background.hold(result("tool", ("tool-layer",)))
    for name in ("a", "b"):
        lease = leases.open(name)
        lease.hold(result(f"k-{name}"))
        leases.release(lease)
    clock.now += RELEASED_MEMORY_S * 2
    leases.release(leases.open("c"))
    held = leases.held_since(clock.now)
    assert held.keys == {"tool"}
    assert held.layers == {"tool-layer"}
    assert len(leases) == 1
    assert leases.background.holder == "background"
