"""Which engine a program talks to, starting the local one when needed, and its session.

The order follows the wire contract, with an explicit `Config.engine` first:

1. `Config.engine` (`unix:///path/engine.sock` or `http://host:port`);
2. a session handed down by `dirk run`: DAGGER_SESSION_PORT + DAGGER_SESSION_TOKEN (used, never
   ended: it belongs to whoever opened it);
3. DIRK_ENGINE (same forms as 1; DIRK_ENGINE_TOKEN is the admin token for `http://`);
4. the local engine of the state directory: reused when its `engine.json` names a live process
   that answers `/health` on the socket, started otherwise (`python -m dirk engine`, detached),
   under a file lock so that concurrent programs end up with one engine.

A session this program opens is held attached (`attach`) until it is closed: if the program is
killed (SIGKILL, OOM killer, a CI timeout), the engine ends the session and stops its work.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from dirk import lazylog
from dirk.errors import ClientConnectionError, DirkError, ProvisionError
from dirk.state.location import STATE_DIR_ENV, default_state_dir
from dirk.wire.attach import SessionAttachment, attach_session
from dirk.wire.client import (
    EngineAddress,
    create_session,
    delete_session,
    health,
)
from dirk.wire.driver import ANYIO, IO

SESSION_PORT_ENV = "DAGGER_SESSION_PORT"
SESSION_TOKEN_ENV = "DAGGER_SESSION_TOKEN"
ENGINE_ENV = "DIRK_ENGINE"
ENGINE_TOKEN_ENV = "DIRK_ENGINE_TOKEN"
#: Seconds a freshly started engine has to write engine.json and answer /health.
START_TIMEOUT = 15.0
POLL_INTERVAL = 0.05
#: Seconds a running engine has to answer /health before it is considered gone.
HEALTH_TIMEOUT = 2.0
LOG_TAIL_LINES = 30
ROOT_MESSAGE = (
    "dirk's engine needs root (rootless mode is not supported yet): run as root, "
    "or set DIRK_ENGINE to a running engine"
)


class JoinSession(NamedTuple):
    """A session opened by someone else (`dirk run`): used as is, never ended."""

    port: int
    token: str


class UseEngine(NamedTuple):
    """A running engine named by `Config.engine` or DIRK_ENGINE."""

    address: EngineAddress
    admin_token: str | None = None


class LocalEngine(NamedTuple):
    """The engine of this machine's state directory, started when it is not running."""

    state_dir: Path


Plan = JoinSession | UseEngine | LocalEngine


class SessionInfo(NamedTuple):
    """An open session: where its queries go and how to end it."""

    token: str
    port: int
    #: Where `POST /query` goes.
    query_address: EngineAddress
    #: Where `DELETE /sessions/<token>` goes; None for a session this program does not own.
    control: EngineAddress | None
    #: The engine's version as it answered the session's creation; "" when unknown (a joined
    #: session, an engine that does not say).
    engine_version: str = ""


def parse_engine(value: str, source: str) -> EngineAddress:
    """An engine address from `unix:///path` or `http(s)://host:port`; `source` names the
    setting in the error message."""
    if value.startswith("unix://"):
        path = value.removeprefix("unix://")
        if path.startswith("/"):
            return EngineAddress.unix(path)
    elif value.startswith(("http://", "https://")) and len(value.split("://", 1)[1]) > 0:
        return EngineAddress(value.rstrip("/"))
    raise ProvisionError(
        f"{source}={value!r} is not an engine address: use unix:///path/to/engine.sock "
        "or http://host:port"
    )


def plan(engine: str | None, env: Mapping[str, str], state_dir: Path | None = None) -> Plan:
    """Which engine to use, from the explicit setting and the environment (no I/O)."""
    if engine:
        return UseEngine(parse_engine(engine, "Config.engine"), env.get(ENGINE_TOKEN_ENV) or None)
    port, token = env.get(SESSION_PORT_ENV), env.get(SESSION_TOKEN_ENV)
    if port or token:
        if not (port and token):
            have, missing = (
                (SESSION_PORT_ENV, SESSION_TOKEN_ENV)
                if port
                else (SESSION_TOKEN_ENV, SESSION_PORT_ENV)
            )
            raise ProvisionError(
                f"{have} is set but {missing} is not: set both (as `dirk run` does) or neither"
            )
        try:
            return JoinSession(int(port), token)
        except ValueError:
            raise ProvisionError(f"{SESSION_PORT_ENV}={port!r} is not a port number") from None
    if env.get(ENGINE_ENV):
        return UseEngine(
            parse_engine(env[ENGINE_ENV], ENGINE_ENV), env.get(ENGINE_TOKEN_ENV) or None
        )
    return LocalEngine(state_dir if state_dir is not None else default_state_dir())


# --- the local engine ----------------------------------------------------------------------


class StartedEngine(Protocol):
    """What the provisioner needs of a started engine process (`subprocess.Popen`)."""

    pid: int

    def poll(self) -> int | None: ...

    def terminate(self) -> None: ...


#: Size past which the engine's log is rotated when the next engine starts.
ENGINE_LOG_LIMIT = 16 * 1024 * 1024

#: Engines this program started: kept referenced so they are not reaped as garbage.
_STARTED: list[StartedEngine] = []


def spawn_engine(state_dir: Path) -> StartedEngine:
    """Starts `python -m dirk engine` detached from this program (own session, output to
    `engine.log`), so it outlives the program and serves later ones."""
    import subprocess

    log_path = state_dir / "engine.log"
    with contextlib.suppress(OSError):
        if log_path.stat().st_size > ENGINE_LOG_LIMIT:
            # One previous log is kept; the log never grows past about twice the limit.
            os.replace(log_path, log_path.with_name("engine.log.1"))
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "dirk", "engine"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd="/",
            env={**os.environ, STATE_DIR_ENV: str(state_dir)},
        )
    _STARTED.append(process)
    return process


def _is_root() -> bool:
    return os.geteuid() == 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_engine_json(state_dir: Path) -> dict[str, Any] | None:
    """The running engine's `engine.json`, or None when absent or unreadable."""
    try:
        info = json.loads((state_dir / "engine.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


async def running_engine(state_dir: Path, *, io: IO = ANYIO) -> EngineAddress | None:
    """The socket address of the engine of `state_dir` if it is alive and answers /health."""
    info = read_engine_json(state_dir)
    if info is None:
        return None
    try:
        pid, socket = int(info["pid"]), str(info["socket"])
    except (KeyError, TypeError, ValueError):
        return None
    if not _pid_alive(pid):
        return None
    address = EngineAddress.unix(socket)
    try:
        await health(address, timeout=HEALTH_TIMEOUT, io=io)
    except ClientConnectionError:
        return None
    return address


@contextlib.asynccontextmanager
async def _start_lock(path: Path, io: IO) -> AsyncIterator[None]:
    """Holds `engine.lock` (flock): one program at a time decides whether to start an engine.

    Polled rather than waited for in a thread, so that a program interrupted while another
    one starts the engine (Ctrl-C) stops waiting at once."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await io.sleep(POLL_INTERVAL)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _log_tail(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as log:
            log.seek(offset)
            text = log.read().decode("utf-8", errors="replace")
    except OSError:
        return "(no log)"
    lines = text.rstrip("\n").splitlines()[-LOG_TAIL_LINES:]
    return "\n".join("  " + line for line in lines) or "  (empty)"


async def ensure_local_engine(
    state_dir: Path,
    *,
    spawn: Callable[[Path], StartedEngine] = spawn_engine,
    is_root: Callable[[], bool] = _is_root,
    start_timeout: float = START_TIMEOUT,
    io: IO = ANYIO,
) -> EngineAddress:
    """The socket address of the local engine, started first if it is not running."""
    address = await running_engine(state_dir, io=io)
    if address is not None:
        return address
    if not is_root():
        raise ProvisionError(ROOT_MESSAGE)
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ProvisionError(
            f"cannot create the engine's state directory {state_dir}: {exc}"
        ) from exc
    async with _start_lock(state_dir / "engine.lock", io):
        address = await running_engine(state_dir, io=io)  # another program may have started it
        if address is not None:
            return address
        log_path = state_dir / "engine.log"
        offset = log_path.stat().st_size if log_path.exists() else 0
        process = spawn(state_dir)
        deadline = time.monotonic() + start_timeout
        while True:
            address = await running_engine(state_dir, io=io)
            if address is not None:
                return address
            code = process.poll()
            if code is not None:
                raise ProvisionError(
                    f"the dirk engine ({sys.executable} -m dirk engine) exited with code {code} "
                    f"while starting; the end of {log_path}:\n{_log_tail(log_path, offset)}"
                )
            if time.monotonic() > deadline:
                process.terminate()
                raise ProvisionError(
                    f"the dirk engine did not answer within {start_timeout:g} s of starting and "
                    f"was stopped; the end of {log_path}:\n{_log_tail(log_path, offset)}"
                )
            await io.sleep(POLL_INTERVAL)


# --- sessions ------------------------------------------------------------------------------


async def open_session(
    workdir: str | Path,
    labels: Mapping[str, str],
    *,
    engine: str | None = None,
    env: Mapping[str, str] | None = None,
    state_dir: Path | None = None,
    io: IO = ANYIO,
    explain: bool = False,
) -> SessionInfo:
    """Opens (or joins) a session on the engine chosen by `plan`. The session gets this
    program's environment (`env`), which env:// secrets read; `explain` asks its steps that
    miss the cache to say why (a joined session keeps what its opener chose)."""
    client_env = os.environ if env is None else env
    chosen = plan(engine, client_env, state_dir)
    root = str(Path(workdir).resolve())
    if isinstance(chosen, JoinSession):
        local = EngineAddress(f"http://127.0.0.1:{chosen.port}")
        return SessionInfo(chosen.token, chosen.port, local, control=None)
    if isinstance(chosen, UseEngine):
        address, admin_token = chosen.address, chosen.admin_token
    else:
        address, admin_token = await ensure_local_engine(chosen.state_dir, io=io), None
    grant = await create_session(
        address, root, labels, admin_token, env=client_env, io=io, explain=explain
    )
    # Queries of a session opened on the socket go over TCP, as the contract's port says.
    query = address if address.uds is None else EngineAddress(f"http://127.0.0.1:{grant.port}")
    return SessionInfo(
        grant.token, grant.port, query, control=address, engine_version=grant.version
    )


async def attach(info: SessionInfo, *, io: IO = ANYIO) -> SessionAttachment | None:
    """Holds a session this program opened attached, so that the engine ends it if the program
    dies; None for a joined session (its opener holds it). `close_session` drops it."""
    if info.control is None:
        return None
    return await attach_session(info.control, info.token, io=io)


async def close_session(
    info: SessionInfo, attachment: SessionAttachment | None = None, *, io: IO = ANYIO
) -> None:
    """Ends a session this program opened; nothing for a joined one. An engine that is
    already gone (or forgot the session) counts as ended. DELETE comes first, so the engine
    logs a deliberate end; the attach connection, if any, is dropped after it in any case."""
    try:
        if info.control is not None:
            with contextlib.suppress(ClientConnectionError):
                await delete_session(info.control, info.token, io=io)
    finally:
        if attachment is not None:
            attachment.close()


@contextlib.asynccontextmanager
async def held_session(
    workdir: str | Path,
    labels: Mapping[str, str],
    *,
    engine: str | None = None,
    env: Mapping[str, str] | None = None,
    state_dir: Path | None = None,
    explain: bool = False,
) -> AsyncIterator[SessionInfo]:
    """Opens (or joins) a session, holds it attached for the block, then ends it with DELETE
    (even when the block is cancelled) before dropping the attach connection."""
    info = await open_session(
        workdir, labels, engine=engine, env=env, state_dir=state_dir, explain=explain
    )
    attachment: SessionAttachment | None = None
    try:
        attachment = await attach(info)
        yield info
    finally:
        with ANYIO.shielded():
            try:
                await close_session(info, attachment)
            except DirkError as exc:  # the session ends with the attach connection anyway
                lazylog.logger(__name__).warning("could not end the session: %s", exc)
