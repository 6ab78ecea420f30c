"""`dirk engine`: the engine daemon in the foreground, or `start|stop|status|logs` of the local
engine (the one of the state directory, which programs start detached when it is not running).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click

from dirk.cli.logs import setup_logging
from dirk.errors import DirkError

#: `dirk engine status` exits with this when no engine runs (as LSB init scripts do).
NOT_RUNNING_EXIT = 3
#: Seconds `dirk engine stop` waits for the engine to exit by default.
STOP_TIMEOUT_S = 30.0
LOG_NAME = "engine.log"

_state_dir_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="DIRK_STATE_DIR",
    help="Where the engine keeps its cache and state [default: /var/lib/dirk for root].",
)


def _state_dir(value: Path | None) -> Path:
    from dirk.state.layout import default_state_dir

    return (value or default_state_dir()).absolute()


@click.group(invoke_without_command=True)
@_state_dir_option
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    envvar="DIRK_ENGINE_PORT",
    show_default=True,
    help="TCP port on 127.0.0.1 (0: the system picks one; engine.json tells clients).",
)
@click.pass_context
def engine(ctx: click.Context, state_dir: Path | None, port: int) -> None:
    """Run the engine daemon in the foreground until SIGTERM or Ctrl-C (without a subcommand),
    or manage the local engine: start, stop, status, logs."""
    ctx.obj = state_dir
    if ctx.invoked_subcommand is not None:
        return
    setup_logging()
    if "httpx" not in sys.modules:
        # httpx imports its command-line module, and with it rich, click's extras and pygments,
        # whenever they are installed (they are: dirk's CLI and progress use them): a tenth of
        # the engine's start. The engine never runs httpx's CLI; `httpx.main` becomes httpx's
        # own stand-in for a missing CLI, the library is unchanged.
        sys.modules["httpx._main"] = None  # type: ignore[assignment]
    from dirk.engine.daemon import serve

    try:
        asyncio.run(serve(state_dir.absolute() if state_dir else None, port, own_process=True))
    except DirkError as exc:
        raise click.ClickException(str(exc)) from exc


def _given_state_dir(ctx: click.Context, own: Path | None) -> Path:
    """The subcommand's --state-dir, else the group's, else the default."""
    parent = ctx.parent.obj if ctx.parent is not None else None
    return _state_dir(own or (parent if isinstance(parent, Path) else None))


@engine.command()
@_state_dir_option
@click.pass_context
def start(ctx: click.Context, state_dir: Path | None) -> None:
    """Start the local engine in the background (nothing to do if it runs)."""
    from dirk.sdk.provision import ensure_local_engine, read_engine_json, running_engine

    root = _given_state_dir(ctx, state_dir)
    try:
        was_running = asyncio.run(running_engine(root)) is not None
        if not was_running:
            asyncio.run(ensure_local_engine(root))
    except DirkError as exc:
        raise click.ClickException(str(exc)) from exc
    info = read_engine_json(root) or {}
    what = "already running" if was_running else "started"
    click.echo(
        f"engine {what}: dirk {info.get('version', '?')}, pid {info.get('pid', '?')}, "
        f"state dir {root}"
    )


@engine.command()
@_state_dir_option
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=STOP_TIMEOUT_S,
    show_default=True,
    help="Seconds to wait for the engine to exit.",
)
@click.pass_context
def stop(ctx: click.Context, state_dir: Path | None, timeout: float) -> None:
    """Stop the local engine (SIGTERM): its sessions end and their containers stop."""
    root = _given_state_dir(ctx, state_dir)
    pid = _engine_pid(root)
    if pid is None:
        click.echo(f"no engine is running on {root}")
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        click.echo(f"no engine is running on {root}")
        return
    except PermissionError:
        raise click.ClickException(
            f"not allowed to stop the engine (pid {pid}) of {root}: run as its user (root)"
        ) from None
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            raise click.ClickException(
                f"the engine (pid {pid}) did not exit within {timeout:g} s of SIGTERM; see "
                f"`dirk engine logs`, or kill it with `kill -9 {pid}` (its sentinel cleans up)"
            )
        time.sleep(0.05)
    click.echo(f"engine stopped (pid {pid}, state dir {root})")


@engine.command()
@_state_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print the status as one JSON object.")
@click.pass_context
def status(ctx: click.Context, state_dir: Path | None, as_json: bool) -> None:
    """Whether the local engine runs: pid, version, uptime, state dir, sessions (exit 3 if
    it does not run)."""
    root = _given_state_dir(ctx, state_dir)
    try:
        found = asyncio.run(_status(root))
    except DirkError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(found))
    elif not found["running"]:
        click.echo(f"engine: not running (state dir {root})")
        click.echo("the next program starts it, or `dirk engine start`")
    else:
        sessions = found["sessions"]
        busy = sum(1 for s in sessions if s.get("running"))
        click.echo("engine: running")
        click.echo(f"pid: {found['pid']}")
        click.echo(f"version: {found['version']}")
        click.echo(f"uptime: {_duration(found['uptime_s'])}")
        click.echo(f"state dir: {root}")
        click.echo(f"port: {found['port']} (127.0.0.1), socket: {found['socket']}")
        click.echo(f"sessions: {len(sessions)} ({busy} running a query)")
        for s in sessions:
            labels = ", ".join(f"{k}={v}" for k, v in sorted(s.get("labels", {}).items()))
            click.echo(
                f"  {s.get('id')}  {s.get('workdir')}  running {s.get('running', 0)}  "
                f"attached {s.get('attached', 0)}  {labels}"
            )
    if not found["running"]:
        sys.exit(NOT_RUNNING_EXIT)


async def _status(root: Path) -> dict[str, Any]:
    from dirk.sdk.provision import read_engine_json, running_engine
    from dirk.wire.client import health, list_sessions

    address = await running_engine(root)
    info = read_engine_json(root)
    if address is None or info is None:
        return {"running": False, "state_dir": str(root)}
    pid = int(info["pid"])
    return {
        "running": True,
        "pid": pid,
        "version": await health(address),
        "uptime_s": _uptime(pid),
        "state_dir": str(root),
        "port": info.get("port"),
        "socket": info.get("socket"),
        "sessions": await list_sessions(address),
    }


@engine.command()
@_state_dir_option
@click.option("-f", "--follow", is_flag=True, help="Keep printing what the engine writes.")
@click.option(
    "-n",
    "--lines",
    type=click.IntRange(min=0),
    default=50,
    show_default=True,
    help="How many lines of the end to print first (0: the whole log).",
)
@click.pass_context
def logs(ctx: click.Context, state_dir: Path | None, follow: bool, lines: int) -> None:
    """Print the local engine's log (the engine that programs start writes engine.log)."""
    root = _given_state_dir(ctx, state_dir)
    path = root / LOG_NAME
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise click.ClickException(
            f"there is no {path}: an engine started by a program or `dirk engine start` logs "
            "there; a foreground `dirk engine` logs to its terminal"
        ) from None
    except OSError as exc:
        raise click.ClickException(f"cannot read {path}: {exc.strerror}") from None
    out = sys.stdout.buffer
    with handle:
        data = handle.read()
        if lines:
            data = b"".join(data.splitlines(keepends=True)[-lines:])
        out.write(data)
        out.flush()
        if not follow:
            return
        try:
            _follow(path, handle, out)
        except KeyboardInterrupt:
            sys.exit(130)


def _follow(path: Path, handle: Any, out: Any) -> None:
    """Like `tail -F`: keeps reading, and reopens the log when a new engine rotated it."""
    inode = os.fstat(handle.fileno()).st_ino
    while True:
        chunk = handle.read()
        if chunk:
            out.write(chunk)
            out.flush()
            continue
        time.sleep(0.2)
        try:
            current = path.stat().st_ino
        except FileNotFoundError:
            continue
        if current != inode:
            handle.close()
            handle = path.open("rb")
            inode = os.fstat(handle.fileno()).st_ino


def _engine_pid(root: Path) -> int | None:
    from dirk.sdk.provision import read_engine_json

    info = read_engine_json(root)
    if info is not None:
        try:
            pid = int(info["pid"])
        except (KeyError, TypeError, ValueError):
            pid = 0
        if pid > 0 and _alive(pid):
            return pid
    return None


def _alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _uptime(pid: int) -> float | None:
    """Seconds since `pid` started, from /proc (start time in clock ticks since boot)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            started_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            boot_s = float(f.read().split()[0])
    except (OSError, IndexError, ValueError):
        return None
    return max(0.0, boot_s - started_ticks / os.sysconf("SC_CLK_TCK"))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days}d"] if days else []
    if days or hours:
        parts.append(f"{hours}h")
    if days or hours or minutes:
        parts.append(f"{minutes}m")
    parts.append(f"{secs}s")
    return "".join(parts)
