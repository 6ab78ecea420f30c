"""Chaos: SIGKILL the engine at random moments of a cache-writing pipeline, then finish it.

Each round starts `dirk engine` on one state dir, runs a pipeline that pulls an image, writes
layers, writes a cache volume and exports a directory to the host, and kills the engine with
SIGKILL after a random delay within the pipeline's own run time. After every kill nothing of
the engine may remain (processes, mounts, network namespaces, veths); after the last one the
pipeline runs to the end and must give exactly what a clean run on a fresh state dir gives,
from a cache in which every entry is whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import dirk
from dirk.state.layout import StateLayout
from dirk.workers.executor.executor import engine_tag
from tests.integration.sdk_engine import (
    ENGINE_STOP_S,
    clean_env,
    log_tail,
    mounts_under,
    new_state_dir,
    remove_state,
    require_root,
    wait_until_serving,
)

pytestmark = [pytest.mark.integration]

ROUNDS = 20
#: Steps whose outputs depend only on their inputs: a rerun must give the same bytes.
STEPS = [
    "mkdir -p /data/tree && for i in $(seq 1 200); do echo line-$i > /data/tree/f$i; done",
    "cat /data/tree/* | sha256sum | cut -c1-16 > /data/tree-digest",
    "dd if=/dev/zero of=/data/zeros bs=1M count=6 2>/dev/null; sha256sum /data/zeros > /data/z",
    "echo run >> /cache/runs; ls /data > /data/listing",
]


def pipeline(client: dirk.Client[dirk.Sync], image: str, export_to: Path) -> str:
    ctr = (
        client.container()
        .from_(image)
        .with_mounted_cache("/cache", client.cache_volume("chaos-runs"))
        .with_exec(["mkdir", "-p", "/data"])
    )
    for step in STEPS:
        ctr = ctr.with_exec(["sh", "-c", step])
    ctr.directory("/data").export(str(export_to))
    return ctr.with_exec(["sh", "-c", "cat /data/tree-digest /data/z /data/listing"]).stdout()


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


class EngineProcess:
    def __init__(self, state: Path, log: Path) -> None:
        self.state, self.log = state, log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dirk", "engine"],
                env=clean_env(state),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.info = wait_until_serving(state, log, self.proc)

    def connect(self, workdir: Path) -> dirk.Connection:
        url = f"unix://{self.info['socket']}"
        return dirk.Connection(dirk.Config(engine=url, workdir=workdir))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            assert self.proc.wait(ENGINE_STOP_S) == 0, log_tail(self.log)


@pytest.fixture
def state() -> Iterator[Path]:
    require_root()
    path = new_state_dir()
    yield path
    remove_state(path)


def leftovers(state: Path) -> list[str]:
    tag = engine_tag(StateLayout(state))
    found = [f"mount {m}" for m in mounts_under(state)]
    netns = Path("/run/netns")
    if netns.is_dir():
        found += [f"netns {p.name}" for p in netns.iterdir() if p.name.startswith(f"dirk-{tag}-")]
    found += [
        f"veth {p.name}" for p in Path("/sys/class/net").iterdir() if p.name.startswith(f"dk{tag}")
    ]
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                cmdline = Path(f"/proc/{entry.name}/cmdline").read_bytes()
            except OSError:
                continue
            if str(state).encode() in cmdline and int(entry.name) != os.getpid():
                command = cmdline.replace(b"\0", b" ")[:120]
                found.append(f"process {entry.name}: {command!r}")
    return found


def corrupt_entries(state: Path) -> list[str]:
    """Cache rows that do not decode or name a layer that is gone; and SQLite's own check."""
    layout = StateLayout(state)
    with sqlite3.connect(layout.db_path) as db:
        problems = [r[0] for r in db.execute("PRAGMA integrity_check") if r[0] != "ok"]
        for key, result in db.execute("SELECT key, result FROM cache"):
            try:
                decoded = json.loads(result)
                layers = [layer for output in decoded["outputs"] for layer in output]
            except (ValueError, KeyError, TypeError):
                problems.append(f"{key}: does not decode")
                continue
            problems += [
                f"{key}: names missing layer {layer}"
                for layer in layers
                if not (layout.layers / layer).is_dir()
            ]
    return problems


def run_until_killed(engine: EngineProcess, workdir: Path, image: str, target: Path) -> None:
    """The pipeline, until its engine dies under it (or to the end, if it is quicker)."""
    try:
        with engine.connect(workdir) as client:
            pipeline(client, image, target)
    except dirk.errors.DirkError:
        pass


def test_sigkill_at_random_moments_leaves_a_cache_that_finishes_the_pipeline(
    state: Path, registry: str, tmp_path: Path
) -> None:
    image = f"{registry}/busybox:latest"
    rng = random.Random(os.environ.get("DIRK_CHAOS_SEED", "chaos"))
    log = state.parent / "engine.log"

    # A clean run on a fresh state dir: what every run must give, and how long it takes.
    reference_state = new_state_dir()
    try:
        engine = EngineProcess(reference_state, reference_state.parent / "engine.log")
        started = time.monotonic()
        with engine.connect(tmp_path) as client:
            expected = pipeline(client, image, tmp_path / "reference")
        duration = time.monotonic() - started
        engine.stop()
    finally:
        remove_state(reference_state)
    expected_tree = tree_digest(tmp_path / "reference")

    kills = []
    for round_number in range(ROUNDS):
        engine = EngineProcess(state, log)
        delay = rng.uniform(0, duration)
        worker = threading.Thread(
            target=run_until_killed,
            args=(engine, tmp_path, image, tmp_path / f"round-{round_number}"),
            daemon=True,
        )
        worker.start()
        worker.join(delay)
        engine.proc.send_signal(signal.SIGKILL)
        engine.proc.wait()
        kills.append(round(delay, 2))
        worker.join(60)
        deadline = time.monotonic() + 15
        while (left := leftovers(state)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not left, f"round {round_number}, killed after {delay:.2f} s: {left}"

    assert corrupt_entries(state) == []
    engine = EngineProcess(state, log)
    try:
        with engine.connect(tmp_path) as client:
            final = pipeline(client, image, tmp_path / "final")
    finally:
        engine.stop()
    print(f"killed after {kills} s (a clean run takes {duration:.2f} s)")
    assert final == expected
    assert tree_digest(tmp_path / "final") == expected_tree
    assert corrupt_entries(state) == []
    assert leftovers(state) == []
