"""Which engine the SDK picks, and how it starts (or reuses) the local one."""

from __future__ import annotations

import fcntl
import json
import os
import socketserver
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import anyio
import pytest

from dirk.errors import ProvisionError
from dirk.sdk import provision
from dirk.sdk.provision import (
    JoinSession,
    LocalEngine,
    UseEngine,
    close_session,
    ensure_local_engine,
    open_session,
    plan,
)
from dirk.wire.client import EngineAddress

# --- plan: precedence of the settings -----------------------------------------------------------

SESSION = {"DAGGER_SESSION_PORT": "4455", "DAGGER_SESSION_TOKEN": "tok"}


def test_local_engine_by_default(tmp_path: Path) -> None:
    assert plan(None, {}, tmp_path) == LocalEngine(tmp_path)


def test_dirk_run_session_wins_over_dirk_engine() -> None:
    env = {**SESSION, "DIRK_ENGINE": "unix:///run/e.sock"}
    assert plan(None, env) == JoinSession(4455, "tok")


def test_dirk_engine_forms() -> None:
    assert plan(None, {"DIRK_ENGINE": "unix:///run/e.sock"}) == UseEngine(
        EngineAddress.unix("/run/e.sock")
    )
    env = {"DIRK_ENGINE": "http://10.0.0.2:7000/", "DIRK_ENGINE_TOKEN": "admin"}
    assert plan(None, env) == UseEngine(EngineAddress("http://10.0.0.2:7000"), "admin")


def test_explicit_config_engine_wins_over_everything() -> None:
    env = {**SESSION, "DIRK_ENGINE": "unix:///other.sock"}
    assert plan("unix:///mine.sock", env) == UseEngine(EngineAddress.unix("/mine.sock"))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DAGGER_SESSION_PORT": "1"}, "DAGGER_SESSION_TOKEN is not"),
        ({"DAGGER_SESSION_TOKEN": "t"}, "DAGGER_SESSION_PORT is not"),
        ({**SESSION, "DAGGER_SESSION_PORT": "http"}, "not a port number"),
        ({"DIRK_ENGINE": "tcp://x:1"}, "DIRK_ENGINE='tcp://x:1' is not an engine address"),
        ({"DIRK_ENGINE": "unix://relative.sock"}, "unix:///path/to/engine.sock"),
    ],
)
def test_bad_settings_are_explained(env: dict[str, str], message: str) -> None:
    with pytest.raises(ProvisionError, match=message.replace("(", r"\(")):
        plan(None, env)


# --- a stand-in engine on a unix socket ---------------------------------------------------------


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class StandIn:
    """Serves /health, /sessions and DELETE /sessions/<t> on `state/engine.sock`."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.socket = state_dir / "engine.sock"
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []
        self.server: _Server | None = None

    def start(self) -> None:
        requests = self.requests

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                requests.append((self.command, self.path, dict(self.headers), body))

            def do_GET(self) -> None:
                self._record()
                self._reply(200, {"version": "test"})

            def do_POST(self) -> None:
                self._record()
                self._reply(200, {"token": "granted", "port": 5555})

            def do_DELETE(self) -> None:
                self._record()
                self._reply(200, {})

            def log_message(self, *args: Any) -> None:
                pass

        self.socket.unlink(missing_ok=True)
        self.server = _Server(str(self.socket), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True).start()
        info = {"pid": os.getpid(), "port": 5555, "socket": str(self.socket), "version": "test"}
        (self.state_dir / "engine.json").write_text(json.dumps(info))

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def standin(state_dir: Path) -> Iterator[StandIn]:
    engine = StandIn(state_dir)
    yield engine
    engine.stop()


class FakeProcess:
    def __init__(self, code: int | None = None) -> None:
        self.pid = os.getpid()
        self.code = code
        self.terminated = False

    def poll(self) -> int | None:
        return self.code

    def terminate(self) -> None:
        self.terminated = True


def test_running_engine_is_reused_without_starting_one(standin: StandIn) -> None:
    standin.start()

    def spawn(state_dir: Path) -> FakeProcess:
        raise AssertionError("must not start an engine when one is running")

    address = anyio.run(lambda: ensure_local_engine(standin.state_dir, spawn=spawn))
    assert address == EngineAddress.unix(str(standin.socket))


def test_engine_is_started_when_none_runs(standin: StandIn) -> None:
    spawned: list[Path] = []

    def spawn(state_dir: Path) -> FakeProcess:
        spawned.append(state_dir)
        threading.Timer(0.1, standin.start).start()  # the engine takes a moment to listen
        return FakeProcess()

    address = anyio.run(lambda: ensure_local_engine(standin.state_dir, spawn=spawn))
    assert spawned == [standin.state_dir]
    assert address.uds == str(standin.socket)


def test_concurrent_programs_start_one_engine(standin: StandIn) -> None:
    spawned: list[Path] = []

    def spawn(state_dir: Path) -> FakeProcess:
        spawned.append(state_dir)
        threading.Timer(0.2, standin.start).start()
        return FakeProcess()

    async def main() -> None:
        async with anyio.create_task_group() as group:
            for _ in range(4):
                group.start_soon(lambda: ensure_local_engine(standin.state_dir, spawn=spawn))

    anyio.run(main)
    assert len(spawned) == 1


def test_stale_engine_json_of_a_dead_process_is_ignored(standin: StandIn) -> None:
    info = {"pid": 2**22 + 12345, "port": 1, "socket": str(standin.socket), "version": "old"}
    (standin.state_dir / "engine.json").write_text(json.dumps(info))
    spawned: list[Path] = []

    def spawn(state_dir: Path) -> FakeProcess:
        spawned.append(state_dir)
        standin.start()
        return FakeProcess()

    anyio.run(lambda: ensure_local_engine(standin.state_dir, spawn=spawn))
    assert len(spawned) == 1


def test_not_root_is_refused_with_the_way_out(state_dir: Path) -> None:
    with pytest.raises(ProvisionError, match=r"needs root.*set DIRK_ENGINE"):
        anyio.run(lambda: ensure_local_engine(state_dir, is_root=lambda: False))


def test_engine_that_dies_while_starting_shows_its_log(state_dir: Path) -> None:
    (state_dir / "engine.log").write_text("an older run: fine\n")

    def spawn(state_dir: Path) -> FakeProcess:
        with open(state_dir / "engine.log", "a") as log:
            log.write("starting\nerror: cannot mount overlay: permission denied\n")
        return FakeProcess(code=3)

    with pytest.raises(ProvisionError) as caught:
        anyio.run(lambda: ensure_local_engine(state_dir, spawn=spawn))
    assert "exited with code 3" in str(caught.value)
    assert "cannot mount overlay" in str(caught.value)
    assert "older run" not in str(caught.value)


def test_engine_that_never_answers_is_stopped(state_dir: Path) -> None:
    process = FakeProcess()
    with pytest.raises(ProvisionError, match=r"did not answer within 0\.2 s"):
        anyio.run(
            lambda: ensure_local_engine(state_dir, spawn=lambda _: process, start_timeout=0.2)
        )
    assert process.terminated


def test_session_on_local_engine_opens_and_ends(
    standin: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    standin.start()
    monkeypatch.setattr(provision, "spawn_engine", None)  # never called: the engine runs

    async def main() -> provision.SessionInfo:
        info = await open_session(
            "relative/dir", {"k": "v"}, env={"TOKEN": "t"}, state_dir=standin.state_dir
        )
        await close_session(info)
        return info

    info = anyio.run(main)
    assert info.token == "granted"
    assert info.query_address == EngineAddress("http://127.0.0.1:5555")
    posts = [r for r in standin.requests if r[0] == "POST"]
    assert posts[0][1] == "/sessions"
    # the program's environment goes along, for env:// secrets
    assert posts[0][3] == {
        "workdir": str(Path("relative/dir").resolve()),
        "labels": {"k": "v"},
        "env": {"TOKEN": "t"},
    }
    assert "authorization" not in {k.lower() for k in posts[0][2]}  # the socket needs none
    deletes = [r for r in standin.requests if r[0] == "DELETE"]
    assert deletes[0][1] == "/sessions/granted"
    assert deletes[0][2]["Authorization"] == "Basic Z3JhbnRlZDo="  # "granted:"


def test_joined_session_is_used_and_never_ended() -> None:
    async def main() -> provision.SessionInfo:
        info = await open_session("/", {}, env=SESSION)
        await close_session(info)  # must not try to reach anything
        return info

    info = anyio.run(main)
    assert (info.token, info.port, info.control) == ("tok", 4455, None)
    assert info.query_address == EngineAddress("http://127.0.0.1:4455")


def test_waiting_for_another_program_starting_the_engine_can_be_cancelled(
    state_dir: Path,
) -> None:
    def spawn(state_dir: Path) -> FakeProcess:
        raise AssertionError("the lock is held by another program: must not start an engine")

    async def main() -> None:
        with anyio.move_on_after(0.2):
            await ensure_local_engine(state_dir, spawn=spawn, is_root=lambda: True)

    with open(state_dir / "engine.lock", "w") as held:  # another program is starting one
        fcntl.flock(held, fcntl.LOCK_EX)
        release = threading.Timer(5, fcntl.flock, (held, fcntl.LOCK_UN))  # never hang the suite
        release.start()
        started = time.monotonic()
        try:
            anyio.run(main)
        finally:
            release.cancel()
        assert time.monotonic() - started < 2  # Ctrl-C (a cancellation) stops the wait
