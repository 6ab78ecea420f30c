"""The leak check itself: it stays quiet after an engine that cleaned up, and names each kind
of leftover (a process in a container root, a mount, a network namespace, a veth) when one
is left, and a bridge pair; a live engine's pool of ready namespaces is not a leak."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dirk.engine import EngineCore
from dirk.state.layout import StateLayout
from dirk.workers.executor import network
from dirk.workers.executor.executor import engine_tag
from tests.integration.engine_helpers import image, sh, stdout
from tests.integration.leaks import LeakWatch

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


async def test_an_engine_that_stopped_leaves_nothing(tmp_path: Path, busybox_ref: str) -> None:
    watch = LeakWatch(tmp_path, grace=10).start()
    async with EngineCore(tmp_path / "state") as engine:
        root, _ = await image(engine, busybox_ref)
        assert await stdout(engine, sh(root, "echo up")) == "up\n"
        during = watch.leftovers()
    assert [item for item in during if item.startswith("netns")], "the pool made no namespace"
    assert watch.check() == []


def test_each_kind_of_leftover_is_named(tmp_path: Path) -> None:
    state = tmp_path / "state"
    layout = StateLayout(state).ensure()
    layout.db_path.touch()
    watch = LeakWatch(tmp_path, grace=0.5).start()
    tag = engine_tag(layout)
    network.setup_host_network()
    ns = network.create_netns(f"dirk-{tag}-leak", f"dk{tag}leak")
    point = layout.run / "m" / "x"
    point.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(point)], check=True)
    sleeper = subprocess.Popen(["sleep", "60"], cwd=point)
    peer = f"dk{tag}peer"
    network.allow_peers(ns.veth, [peer])
    try:
        left = watch.check()
        assert f"netns dirk-{tag}-leak" in left
        assert f"veth dk{tag}leak" in left
        assert f"mount {point} (tmpfs)" in left
        assert [item for item in left if item.startswith(f"process {sleeper.pid} (sleep 60)")]
        assert f"bridge pair {ns.veth} -> {peer}" in left
        assert f"bridge pair {peer} -> {ns.veth}" in left
        assert len(left) == 6, left
    finally:
        network.forbid_peers(ns.veth, [peer])
        sleeper.kill()
        sleeper.wait()
        subprocess.run(["umount", str(point)], check=True)
        network.remove_netns(ns.name)
        subprocess.run(["ip", "link", "del", ns.veth], check=False)
    assert watch.check() == []


def test_a_live_engines_idle_pool_is_not_a_leak_but_one_more_is(tmp_path: Path) -> None:
    state = tmp_path / "state"
    layout = StateLayout(state).ensure()
    layout.db_path.touch()
    sleeper = subprocess.Popen(["sleep", "60"])  # stands for the engine holding the state
    (state / "engine.pid").write_text(f"{sleeper.pid}\n")
    watch = LeakWatch(tmp_path, grace=0.5).start()
    tag = engine_tag(layout)
    network.setup_host_network()
    made = []
    try:
        for i in range(5):
            made.append(network.create_netns(f"dirk-{tag}-p{i}", f"dk{tag}p{i}"))
        left = watch.check()
        assert left == [f"netns dirk-{tag}-p4", f"veth dk{tag}p4"]
    finally:
        sleeper.kill()
        sleeper.wait()
        for ns in made:
            network.remove_netns(ns.name)
            subprocess.run(["ip", "link", "del", ns.veth], check=False)


PROBE = """
import subprocess


def test_leaves_a_process(no_leaks, tmp_path):
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "dirk.db").touch()
    subprocess.Popen(["sleep", "30"], cwd=tmp_path / "state", start_new_session=True)


def test_leaves_nothing(no_leaks, tmp_path):
    subprocess.run(["true"], cwd=tmp_path, check=True)
"""


def test_the_fixture_fails_a_test_at_teardown_naming_the_leak(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(
        "from tests.integration.leaks import no_leaks, pytest_runtest_teardown\n"
    )
    (tmp_path / "test_probe.py").write_text(PROBE)
    repo = Path(__file__).resolve().parents[2]
    env = {"PYTHONPATH": f"{repo}:{repo / 'src'}", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    leaked = re.findall(r"process (\d+) \(sleep 30\)", proc.stdout)
    for pid in set(leaked):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "2 passed, 1 error" in proc.stdout, proc.stdout
    assert "ERROR at teardown of test_leaves_a_process" in proc.stdout, proc.stdout
    assert leaked, proc.stdout
