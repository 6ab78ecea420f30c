"""The cache's garbage collector as a user meets it: `dirk cache ls|du|prune` against a real
engine while a pipeline's session is open (nothing it uses disappears), the engine's log
saying what went and why, cache volumes pruned by key, and the background collector under a
size limit."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.sdk_engine import RunningEngine, clean_env, foreground_engine, log_tail

pytestmark = pytest.mark.integration

PROGRAM = Path(__file__).with_name("gc_pipeline.py")
DIRK = Path(sys.executable).with_name("dirk")
REPO = Path(__file__).resolve().parents[2]
#: Seconds a program or command under test gets.
TIMEOUT_S = 180


@pytest.fixture(scope="module")
def engine() -> Iterator[RunningEngine]:
    # No background collection: these tests decide when the cache is collected.
    yield from foreground_engine(DIRK_GC_INTERVAL="0")


def _env(engine: RunningEngine) -> dict[str, str]:
    return clean_env(engine.state_dir, PYTHONPATH=str(REPO / "src"))


def dirk_cmd(engine: RunningEngine, *args: str) -> str:
    done = subprocess.run(
        [str(DIRK), *args],
        env=_env(engine),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        cwd=REPO,
    )
    assert done.returncode == 0, f"dirk {' '.join(args)}: {done.stderr}"
    return done.stdout


def entries(engine: RunningEngine) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(dirk_cmd(engine, "cache", "ls", "--json"))
    return found


def run_pipeline(engine: RunningEngine, image: str, tag: str) -> str:
    done = subprocess.run(
        [sys.executable, str(PROGRAM), image, tag],
        env=_env(engine),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[-1]


def described(found: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    return [e for e in found if text in e["description"]]


def test_prune_under_a_size_limit_keeps_what_a_live_session_uses(
    engine: RunningEngine, busybox_ref: str
) -> None:
    run_pipeline(engine, busybox_ref, "old")  # its session has ended
    live = subprocess.Popen(
        [sys.executable, str(PROGRAM), busybox_ref, "live", "hold"],
        env=_env(engine),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert live.stdout is not None and live.stdin is not None
        made = live.stdout.readline().split()
        assert made[:1] == ["made"], live.stderr.read() if live.stderr else ""
        token = made[1]
        before = entries(engine)
        assert described(before, "echo old") and described(before, "echo live")
        assert all(e["activelyUsed"] for e in described(before, "echo live"))
        assert not any(e["activelyUsed"] for e in described(before, "echo old"))

        said = dirk_cmd(engine, "cache", "prune", "--max-size", "1B")
        assert said.startswith("freed "), said

        after = entries(engine)
        assert not described(after, "echo old"), "the ended session's steps stay"
        assert not [e for e in after if e["key"] == "volume:vol-old"]
        assert described(after, "echo live"), "the live session's steps went"
        assert [e for e in after if e["key"] == "volume:vol-live"]
        # The live session builds on what it had: its layers and its volume are all there.
        live.stdin.write("go on\n")
        live.stdin.flush()
        read = live.stdout.readline().split()
        assert read == ["read", token, "300000", token], live.stderr.read() if live.stderr else ""
        assert live.wait(TIMEOUT_S) == 0
    finally:
        live.kill()
        live.wait()

    log = log_tail(engine.log, 20000)
    assert "cache gc: evicted" in log
    assert "echo old" in log and "least recently used: the cache took" in log, log
    assert "over its max used space 1 B" in log

    # Its session over, the live pipeline's entries go too; a new run makes them again.
    dirk_cmd(engine, "cache", "prune")
    assert not [e for e in entries(engine) if e["recordType"] != "internal"]
    assert not list((engine.state_dir / "l").iterdir())
    assert run_pipeline(engine, busybox_ref, "live") != token  # ran again: a new token


def test_ls_du_and_prune_of_a_volume_by_key(engine: RunningEngine, busybox_ref: str) -> None:
    token = run_pipeline(engine, busybox_ref, "keyed")
    assert run_pipeline(engine, busybox_ref, "keyed") == token  # cached: the same output

    listing = dirk_cmd(engine, "cache", "ls").splitlines()
    assert listing[0].split() == ["SIZE", "LAST", "USED", "TYPE", "DESCRIPTION"]
    volume_lines = [line for line in listing if "cache volume vol-keyed" in line]
    assert len(volume_lines) == 1 and "exec.cachemount" in volume_lines[0]
    assert any("sh -c 'cat /token >> /cache/tokens; cat /token'" in line for line in listing)
    sizes = [e["diskSpaceBytes"] for e in entries(engine)]
    assert sizes == sorted(sizes, reverse=True)
    assert max(sizes) >= 300_000  # the step that wrote /blob

    usage = dirk_cmd(engine, "cache", "du")
    assert "exec.cachemount (" in usage and "regular (" in usage and " total, " in usage
    assert "policy: max used space " in usage

    dirk_cmd(engine, "cache", "prune", "--key", "volume:vol-keyed")
    after = entries(engine)
    assert not [e for e in after if e["key"] == "volume:vol-keyed"]
    assert described(after, "echo keyed"), "pruning a volume by key took other entries"
    # A volume's contents are no part of any key: the steps that used it stay cached.
    assert run_pipeline(engine, busybox_ref, "keyed") == token


def test_the_background_collector_enforces_the_size_limit(busybox_ref: str) -> None:
    engines = foreground_engine(DIRK_GC_INTERVAL="1s", DIRK_GC_MAX_USED_SPACE="200kB")
    engine = next(engines)
    try:
        run_pipeline(engine, busybox_ref, "background")
        deadline = time.monotonic() + 60
        while "cache gc: evicted" not in log_tail(engine.log, 20000):
            assert time.monotonic() < deadline, log_tail(engine.log)
            time.sleep(0.5)
        log = log_tail(engine.log, 20000)
        assert "over its max used space 200.0 kB" in log, log
        total = sum(e["diskSpaceBytes"] for e in entries(engine))
        assert total <= 200_000, entries(engine)
    finally:
        next(engines, None)


def test_a_bad_policy_value_stops_the_engine_with_its_name(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dirk", "engine", "--state-dir", str(tmp_path / "s")],
        env=clean_env(None, DIRK_GC_MAX_USED_SPACE="lots", PYTHONPATH=str(REPO / "src")),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert done.returncode != 0
    assert "DIRK_GC_MAX_USED_SPACE 'lots' is not a size" in done.stderr, done.stderr


def test_a_malformed_prune_option_is_refused_by_its_name(engine: RunningEngine) -> None:
    done = subprocess.run(
        [str(DIRK), "cache", "prune", "--max-size", "lots"],
        env=_env(engine),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert done.returncode == 2
    assert "--max-size 'lots' is not a size" in done.stderr, done.stderr
