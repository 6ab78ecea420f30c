"""The engine daemon: one engine per state directory, served over TCP and a unix socket.

Start-up order matters to clients polling for us: lock the state directory (a second engine
fails at once), bind both sockets, start the engine (while a thread imports the server and
builds the schema: cold start is the longer of the two, not their sum), serve, and only then
publish `engine.json`, so whoever reads it can connect. On SIGTERM/SIGINT: unpublish, stop
accepting, end the sessions (their running queries are cancelled), close the engine, remove
the socket. A second signal during shutdown exits at once. However the process ends, its
sentinel (`engine.sentinel`) kills and removes what it left running at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import gc
import grp
import json
import logging
import os
import secrets
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from dirk.engine.sentinel import start_sentinel
from dirk.errors import EngineAlreadyRunningError, StateError
from dirk.state.layout import default_state_dir
from dirk.versions import engine_version

if TYPE_CHECKING:
    from graphql import GraphQLSchema

    from dirk.engine.sessions import Session

log = logging.getLogger(__name__)

ENGINE_JSON = "engine.json"
SOCKET_NAME = "engine.sock"
#: Names the group whose members may use the engine's socket (see `socket_group`).
SOCKET_GROUP_ENV = "DIRK_SOCKET_GROUP"
#: Held (flock) by the running engine and holding its pid. Not `engine.lock`: clients hold that
#: one while they start an engine.
PID_LOCK = "engine.pid"
#: sockaddr_un holds 108 bytes, the path's terminating NUL included.
MAX_SOCKET_PATH = 107
#: How long a new engine waits for a killed engine's sentinel to finish cleaning up.
SENTINEL_WAIT_S = 10.0
#: How long in-flight requests get to answer once their sessions were ended at shutdown.
SHUTDOWN_GRACE_S = 5.0


class EngineLike(Protocol):
    async def start(self) -> None: ...

    async def aclose(self) -> None: ...


@attrs.frozen
class Components:
    """What the daemon serves; the real engine and API by default, stand-ins in unit tests."""

    make_engine: Callable[[Path], EngineLike]
    build_schema: Callable[[], GraphQLSchema]
    make_context: Callable[[Any, Session], object]


def default_components() -> Components:
    """The real engine and the resolvers' schema; `dirk.api` is imported by `build_schema`,
    which the daemon runs (in a thread) while the engine starts."""
    from dirk.engine.core import EngineCore

    def build_schema() -> GraphQLSchema:
        from dirk.api import build_schema

        return build_schema()

    def make_context(engine: EngineCore, session: Session) -> object:
        from dirk.api import RequestContext

        return RequestContext(engine=engine, session=session)

    return Components(make_engine=EngineCore, build_schema=build_schema, make_context=make_context)


@attrs.frozen
class EngineInfo:
    """The contents of `S/engine.json`: how clients on this host reach the running engine."""

    pid: int
    port: int
    socket: str
    version: str
    admin_token: str

    def write(self, path: Path) -> None:
        """Atomically, mode 0600: the admin token is a credential."""
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(attrs.asdict(self), f)
        os.replace(tmp, path)


async def serve(
    state_dir: Path | None,
    port: int,
    *,
    components: Components | None = None,
    stop: asyncio.Event | None = None,
    own_process: bool = False,
) -> None:
    """Run the engine daemon until SIGTERM/SIGINT (or until `stop` is set, for tests).
    `own_process`: the engine is all this process runs (`dirk engine`), so its start-up may
    pause and freeze the cycle collector (`StartupCollector`)."""
    root = state_dir or default_state_dir()
    return_large_frees_to_the_system()
    collector = StartupCollector(own_process)
    try:
        await _serve(root, port, components, stop, collector)
    finally:
        collector.resume()


async def _serve(
    root: Path,
    port: int,
    components: Components | None,
    stop: asyncio.Event | None,
    collector: StartupCollector,
) -> None:
    if stop is None:
        stop = asyncio.Event()
        _install_signal_handlers(stop)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StateError(f"cannot create the state directory {root}: {exc}") from exc
    lock_fd = _lock_state_dir(root)
    try:
        sentinel = start_sentinel(root, lock_fd)
        try:
            await _serve_locked(root, port, components or default_components(), stop, collector)
        finally:
            sentinel.stop()
    finally:
        os.close(lock_fd)


async def _serve_locked(
    root: Path,
    port: int,
    components: Components,
    stop: asyncio.Event,
    collector: StartupCollector,
) -> None:
    info_path = root / ENGINE_JSON
    sock_path = root / SOCKET_NAME
    info_path.unlink(missing_ok=True)  # left by an engine that was killed
    with contextlib.ExitStack() as sockets:  # closed however start-up or serving ends
        tcp = sockets.enter_context(_bind_tcp(port))
        group = socket_group()
        unix = sockets.enter_context(_bind_unix(sock_path, group))
        sockets.callback(sock_path.unlink, missing_ok=True)
        engine = components.make_engine(root)
        try:
            # The engine's start-up waits mostly on subprocesses and the disk: import the server
            # and build the schema in a thread meanwhile (cold start is the sum of both otherwise).
            # The engine starts in this task, which also closes it (its task group lives here).
            loading = asyncio.ensure_future(asyncio.to_thread(_load_server, components))
            try:
                await engine.start()
            finally:
                schema = await loading
            if not stop.is_set():  # a signal while starting: never publish an engine that stops
                open_to_group(root, group)  # after the engine made its state private again
                await _serve_started(
                    engine, schema, components, tcp, unix, info_path, stop, collector
                )
        finally:
            try:
                await engine.aclose()
            finally:
                log.info("engine stopped")


def _load_server(components: Components) -> GraphQLSchema:
    import_aiohttp_server()
    return components.build_schema()


def import_aiohttp_server() -> None:
    """Imports `aiohttp.web` (for its cost, paid in this thread while the engine starts; used
    by `_serve_started`)."""
    import aiohttp.web  # noqa: F401


async def _serve_started(
    engine: EngineLike,
    schema: GraphQLSchema,
    components: Components,
    tcp: socket.socket,
    unix: socket.socket,
    info_path: Path,
    stop: asyncio.Event,
    collector: StartupCollector,
) -> None:
    from aiohttp import web

    from dirk.engine.sessions import SessionRegistry
    from dirk.wire.server import WireServer

    sessions = SessionRegistry()
    version = engine_version()
    server = WireServer(
        schema,
        sessions,
        context_factory=lambda session: components.make_context(engine, session),
        tracer=lambda: getattr(engine, "telemetry", None),
        admin_token=secrets.token_urlsafe(32),
        version=version,
        port=tcp.getsockname()[1],
    )
    runner = web.AppRunner(server.app(), access_log=None, shutdown_timeout=SHUTDOWN_GRACE_S)
    await runner.setup()
    try:
        await web.SockSite(runner, tcp).start()
        await web.SockSite(runner, unix).start()
        EngineInfo(
            pid=os.getpid(),
            port=server.port,
            socket=unix.getsockname(),
            version=version,
            admin_token=server.admin_token,
        ).write(info_path)
        collector.started()
        log.info(
            "dirk engine %s (pid %d) serving on 127.0.0.1:%d and %s",
            version,
            os.getpid(),
            server.port,
            unix.getsockname(),
        )
        await stop.wait()
        log.info("stopping: %d session(s) open", len(sessions))
    finally:
        info_path.unlink(missing_ok=True)
        await runner.cleanup()  # stops listening, ends sessions, waits for answers


class StartupCollector:
    """Keeps the cycle collector off while the engine starts, then out of what start-up made.

    Start-up creates some hundred thousand objects that live as long as the engine (modules,
    classes, the schema); each full collection meanwhile walks all of them, a tenth of the
    cold start. So collection is paused until the engine is published, and what exists then
    is frozen (`gc.freeze`): later collections never walk it again. The price: the cycles
    start-up left (about 2 MB, mostly temporary classes) are never freed."""

    def __init__(self, active: bool = True) -> None:
        self._paused = active and gc.isenabled()
        if self._paused:
            gc.disable()

    def started(self) -> None:
        """The engine serves: freeze what start-up made, collect again from here on."""
        if self._paused:
            self._paused = False
            gc.freeze()
            gc.enable()

    def resume(self) -> None:
        """Start-up failed or ended: collect again (nothing frozen)."""
        if self._paused:
            self._paused = False
            gc.enable()


def _lock_state_dir(root: Path) -> int:
    """Take the running-engine lock of `root`; its file holds our pid for the next one's error.

    A killed engine's sentinel holds the lock while it cleans up (a second or two): when the
    pid in the file is gone, wait for the lock instead of refusing."""
    path = root / PID_LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    deadline = time.monotonic() + SENTINEL_WAIT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            if not _pid_alive(holder) and time.monotonic() < deadline:
                time.sleep(0.05)
                continue
        os.close(fd)
        raise EngineAlreadyRunningError(
            f"an engine is already running (pid {holder}) on the state directory {root}: "
            f"use it, stop it first (kill {holder}), or give this one another --state-dir"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _pid_alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (ValueError, PermissionError):
        return True
    return True


def _bind_tcp(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        sock.close()
        raise StateError(
            f"cannot listen on 127.0.0.1:{port} ({exc.strerror}): choose a free --port "
            "(or DIRK_ENGINE_PORT), or 0 to let the system pick one"
        ) from exc
    return sock


#: mallopt(3) parameter: allocations at least this large are mmapped (and freed at once).
_M_MMAP_THRESHOLD = -3
LARGE_ALLOCATION = 1024 * 1024


def return_large_frees_to_the_system() -> None:
    """Large requests and answers (a 5 MB query, a 200 MB stdout) must not keep the engine's
    memory up once answered. glibc serves blocks from its heap once it has raised its mmap
    threshold (it does so after the first large free, up to 32 MiB), and a heap rarely
    shrinks; a fixed threshold keeps every block of 1 MiB or more in its own mapping, which
    goes back to the system when freed."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, LARGE_ALLOCATION)


def socket_group() -> int | None:
    """The group whose members may connect to the engine's socket (`DIRK_SOCKET_GROUP`, a
    name or a number); None: root only. Each session still has its own user's rights."""
    raw = os.environ.get(SOCKET_GROUP_ENV, "").strip()
    if not raw:
        return None
    if raw.isdigit():
        return int(raw)
    try:
        return grp.getgrnam(raw).gr_gid
    except KeyError:
        raise StateError(
            f"{SOCKET_GROUP_ENV}={raw!r} names no group of this host: create it "
            f"(groupadd {raw}) or give an existing group's name or number"
        ) from None


def open_to_group(root: Path, group: int | None) -> None:
    """Let `group` reach the socket: the state root becomes traversable (0710, not listable)
    by it; everything inside keeps its own private mode."""
    if group is not None:
        os.chown(root, -1, group)
        os.chmod(root, 0o710)


def _bind_unix(path: Path, group: int | None = None) -> socket.socket:
    """Bound and chmod 0600 (0660 for `group`) before listening, so nobody else can ever
    connect."""
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise StateError(
            f"cannot create the engine socket {path}: unix socket paths are limited to "
            f"{MAX_SOCKET_PATH} bytes, so use a shorter --state-dir (or DIRK_STATE_DIR)"
        )
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        if group is not None:
            os.chown(path, -1, group)
        os.chmod(path, 0o600 if group is None else 0o660)
    except OSError as exc:
        sock.close()
        raise StateError(
            f"cannot create the engine socket {path} ({exc.strerror}): check that the state "
            "directory is writable and on a filesystem that supports sockets"
        ) from exc
    return sock


def _install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("%s again: exiting now", signal.Signals(signum).name)
            os._exit(128 + signum)
        log.info("%s: shutting down", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, on_signal, signum)
