"""The daemon behind `dirk engine`, with a stand-in engine and schema (no containers)."""

from __future__ import annotations

import gc
import os
import socket
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest

from dirk.engine import daemon as daemon_module
from dirk.engine.daemon import StartupCollector, serve
from dirk.errors import EngineAlreadyRunningError, StateError

from .wire_standin import Daemon, basic

pytestmark = pytest.mark.anyio


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    d = Daemon(tmp_path / "state")
    yield d
    await d.aclose()


async def test_engine_json_socket_and_both_listeners(daemon: Daemon) -> None:
    info = await daemon.start()
    path = daemon.root / "engine.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert info["pid"] == os.getpid()
    assert set(info) == {"pid", "port", "socket", "version", "admin_token"}
    sock = Path(info["socket"])
    assert sock == daemon.root / "engine.sock"
    assert stat.S_ISSOCK(sock.stat().st_mode) and stat.S_IMODE(sock.stat().st_mode) == 0o600
    assert daemon.engines[0].events == ["start"]

    unix = aiohttp.UnixConnector(path=str(sock))
    async with aiohttp.ClientSession(base_url="http://engine", connector=unix) as over_unix:
        assert (await (await over_unix.get("/health")).json())["version"] == info["version"]
        resp = await over_unix.post("/sessions", json={"workdir": "/w", "labels": {}})
        created = await resp.json()
    assert created["port"] == info["port"]
    tcp_url = f"http://127.0.0.1:{info['port']}"
    async with aiohttp.ClientSession(base_url=tcp_url) as over_tcp:
        resp = await over_tcp.post(
            "/query", json={"query": "{ workdir }"}, headers=basic(created["token"])
        )
        assert await resp.json() == {"data": {"workdir": "/w"}}


async def test_stop_removes_engine_json_and_socket_and_closes_engine(daemon: Daemon) -> None:
    info = await daemon.start()
    await daemon.aclose()
    assert not (daemon.root / "engine.json").exists()
    assert not Path(info["socket"]).exists()
    assert daemon.engines[0].events == ["start", "aclose"]
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", info["port"]), timeout=1).close()


async def test_second_engine_on_same_state_dir_fails(daemon: Daemon) -> None:
    await daemon.start()
    second = Daemon(daemon.root)
    with pytest.raises(EngineAlreadyRunningError, match=rf"already running \(pid {os.getpid()}\)"):
        await serve(daemon.root, 0, components=second.components(), stop=second.stop)
    assert second.engines == []  # failed before starting an engine
    assert (daemon.root / "engine.json").exists()  # the first one is untouched


async def test_restart_after_stop_reuses_the_state_dir(daemon: Daemon) -> None:
    await daemon.start()
    await daemon.aclose()
    again = Daemon(daemon.root)
    info = await again.start()
    assert info["pid"] == os.getpid()
    await again.aclose()


async def test_busy_port_is_a_clear_error(daemon: Daemon) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(StateError, match=rf"cannot listen on 127.0.0.1:{port}.*--port"):
            await daemon.start(port)


async def test_too_long_socket_path_is_a_clear_error_and_frees_the_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bound: list[socket.socket] = []
    bind_tcp = daemon_module._bind_tcp

    def record(port: int) -> socket.socket:
        bound.append(bind_tcp(port))
        return bound[-1]

    monkeypatch.setattr(daemon_module, "_bind_tcp", record)
    deep = Daemon(tmp_path / ("d" * 120))
    with pytest.raises(StateError, match=r"limited to 107 bytes.*shorter --state-dir"):
        await deep.start()
    assert deep.engines == []
    assert bound[0].fileno() == -1  # the TCP listener was closed, not leaked


async def test_engine_that_fails_to_start_closes_its_sockets(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path / "state")
    components = daemon.components()

    def broken_engine(root: Path) -> Any:
        raise StateError("cannot open the database")

    broken = attrs.evolve(components, make_engine=broken_engine)
    with pytest.raises(StateError, match="database"):
        await serve(daemon.root, 0, components=broken, stop=daemon.stop)
    assert not (daemon.root / "engine.sock").exists()
    assert not (daemon.root / "engine.json").exists()


async def test_signal_during_start_up_stops_without_serving(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path / "state")
    daemon.stop.set()  # SIGTERM arrived while the engine was starting
    await serve(daemon.root, 0, components=daemon.components(), stop=daemon.stop)
    assert daemon.engines[0].events == ["start", "aclose"]
    assert not (daemon.root / "engine.json").exists()
    assert not (daemon.root / "engine.sock").exists()


async def test_its_own_process_collects_no_cycles_until_published(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path / "state")
    components = daemon.components()
    seen: list[bool] = []

    def make_engine(root: Path) -> Any:
        seen.append(gc.isenabled())
        return components.make_engine(root)

    daemon.components = lambda: attrs.evolve(components, make_engine=make_engine)  # type: ignore[method-assign]
    frozen = gc.get_freeze_count()
    try:
        await daemon.start(own_process=True)
        assert seen == [False]  # paused while starting
        assert gc.isenabled()  # published: collecting again, start-up's objects frozen
        assert gc.get_freeze_count() > frozen
    finally:
        await daemon.aclose()
        gc.unfreeze()
    assert gc.isenabled()


async def test_a_daemon_sharing_its_process_leaves_the_collector_alone(daemon: Daemon) -> None:
    frozen = gc.get_freeze_count()
    await daemon.start()
    assert gc.isenabled() and gc.get_freeze_count() == frozen


async def test_a_failed_start_collects_again_with_nothing_frozen(tmp_path: Path) -> None:
    def broken_engine(root: Path) -> Any:
        assert not gc.isenabled()
        raise StateError("cannot open the database")

    daemon = Daemon(tmp_path / "state")
    broken = attrs.evolve(daemon.components(), make_engine=broken_engine)
    frozen = gc.get_freeze_count()
    with pytest.raises(StateError, match="database"):
        await serve(daemon.root, 0, components=broken, stop=daemon.stop, own_process=True)
    assert gc.isenabled() and gc.get_freeze_count() == frozen


def test_a_collector_already_off_is_left_off() -> None:
    gc.disable()
    try:
        collector = StartupCollector()
        collector.started()
        assert not gc.isenabled()
    finally:
        gc.enable()
