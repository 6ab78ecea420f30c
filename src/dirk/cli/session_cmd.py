"""`dirk session` (the handshake the official Dagger SDKs run) and `dirk run CMD`.

`dirk session` is what the SDKs start when `_EXPERIMENTAL_DAGGER_CLI_BIN` names dirk: it prints
one JSON line `{"port": N, "session_token": "..."}` and holds the session open until its stdin
closes (the Python SDK closes it) or SIGTERM/SIGINT (the TS SDK sends SIGTERM); then it ends the
session and exits 0. `dirk run` gives a command the same session through DAGGER_SESSION_PORT and
DAGGER_SESSION_TOKEN, as `dagger run` does. Both reach the engine exactly as a dirk SDK program
would (`dirk.sdk.provision`): the session of an enclosing `dirk run`, DIRK_ENGINE, or the local
engine, started when it is not running. Both hold the session they open attached: killed (even
by SIGKILL), they leave no session running behind them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import signal
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import click

from dirk.cli.logs import setup_logging
from dirk.cli.shell_gate import ShellGate
from dirk.errors import DirkError
from dirk.progress import MODES, PROGRESS_ENV

if TYPE_CHECKING:
    import asyncio

    from dirk.progress import View
    from dirk.progress.watch import Watch
    from dirk.sdk.provision import SessionInfo

F = TypeVar("F", bound=Callable[..., object])
#: Seconds the end of a session waits for its last step events to reach the view.
PROGRESS_DRAIN_S = 5.0

log = logging.getLogger("dirk.cli")

#: Signals that end `dirk session`, and that `dirk run` passes on to its command.
ENDING_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
FORWARDED_SIGNALS = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)


def _parse_labels(values: Sequence[str]) -> dict[str, str]:
    """Dagger's `--label key:value` (the value may contain ':'; a bare key has an empty value)."""
    labels: dict[str, str] = {}
    for value in values:
        key, _, val = value.partition(":")
        if not key:
            raise click.BadParameter(f"{value!r} has no key: use KEY:VALUE", param_hint="--label")
        labels[key] = val
    return labels


def _workdir(value: Path | None) -> Path:
    return (value or Path.cwd()).absolute()


_workdir_option = click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Host directory relative paths resolve against [default: the current directory].",
)


def _progress_option(default: str) -> Callable[[F], F]:
    return click.option(
        "--progress",
        type=click.Choice(MODES),
        envvar=PROGRESS_ENV,
        default=default,
        show_default=True,
        help="How the pipeline's steps show on stderr: auto (live on a terminal when CI is "
        "not set, else plain), tty (live), plain (one line per event, for logs) or quiet. "
        f"[env: {PROGRESS_ENV}]",
    )


_label_option = click.option(
    "--label", "labels", multiple=True, metavar="KEY:VALUE", help="Label the session (repeatable)."
)


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@_label_option
@_workdir_option
@_progress_option("plain")
@click.option("--project", hidden=True, help="Dagger module config: dirk has no modules.")
@click.option("--load-workspace-modules", is_flag=True, hidden=True)
@click.pass_context
def session(
    ctx: click.Context,
    labels: tuple[str, ...],
    workdir: Path | None,
    progress: str,
    project: str | None,
    load_workspace_modules: bool,
) -> None:
    """Open a session for an official Dagger SDK; print its port and token as one JSON line.

    While the session lives, its steps show on stderr (plain lines by default), which the
    SDKs copy to their log output."""
    setup_logging("WARNING")
    for name, given in (
        ("--project", project),
        ("--load-workspace-modules", load_workspace_modules),
    ):
        if given:
            log.warning("%s is ignored: dirk does not support Dagger modules", name)
    if ctx.args:
        log.warning("ignoring unknown arguments: %s", " ".join(ctx.args))
    import asyncio

    try:
        asyncio.run(_hold_session(_workdir(workdir), _parse_labels(labels), progress))
    except DirkError as exc:
        raise click.ClickException(str(exc)) from exc


async def _hold_session(workdir: Path, labels: Mapping[str, str], progress: str) -> None:
    import asyncio

    from dirk.sdk.provision import held_session

    end = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in ENDING_SIGNALS:
        loop.add_signal_handler(signum, end.set)
    from dirk.versions import first_mismatch

    async with _shown(progress) as show, held_session(workdir, labels) as opened:
        advice = first_mismatch(opened.engine_version, f"at {opened.control}")
        if advice is not None:
            log.warning("%s", advice)
        await show(opened)  # before the handshake line: the SDK's first query is seen
        line = json.dumps({"port": opened.port, "session_token": opened.token})
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
        _watch_stdin_eof(loop, end)
        await end.wait()


@contextlib.asynccontextmanager
async def _shown(
    progress: str, wrap: Callable[[View], View] | None = None
) -> AsyncIterator[Callable[[SessionInfo], Awaitable[None]]]:
    """Shows a session's steps on stderr in the `progress` view: the block calls the function
    it gets with the session once open; leaving waits for the stream's last events (the
    session has ended by then, unless it was joined) and closes the view (its summary)."""
    watches: list[Watch] = []
    owned = True

    async def show(opened: SessionInfo) -> None:
        nonlocal owned
        owned = opened.control is not None
        watch = await _watch(opened, progress, wrap=wrap)
        if watch is not None:
            watches.append(watch)

    try:
        yield show
    finally:
        import asyncio

        for watch in watches:
            await asyncio.to_thread(watch.finish, PROGRESS_DRAIN_S if owned else 0.2)


async def _watch(
    opened: SessionInfo, progress: str, io: Any = None, wrap: Callable[[View], View] | None = None
) -> Watch | None:
    """The session's steps shown on stderr in the `progress` view (None: quiet, or the
    engine has no event stream); `io`: `wire.driver`'s, for blocking callers."""
    if progress == "quiet":
        return None
    from dirk.progress import make_view
    from dirk.progress.watch import watch_events

    view = make_view(progress, sys.stderr, os.environ)
    if wrap is not None:
        view = wrap(view)
    address = opened.control or opened.query_address
    try:
        return await watch_events(address, opened.token, [view], io=io)
    except DirkError as exc:
        log.warning("the session's steps are not shown: %s", exc)
        return None


def _watch_stdin_eof(loop: asyncio.AbstractEventLoop, end: asyncio.Event) -> None:
    """Set `end` when stdin reaches EOF; a thread, because stdin may be a pipe, tty or file."""

    def read_until_eof() -> None:
        with contextlib.suppress(OSError):
            while os.read(0, 65536):
                pass
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            loop.call_soon_threadsafe(end.set)

    threading.Thread(target=read_until_eof, name="stdin-eof", daemon=True).start()


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@_label_option
@_workdir_option
@_progress_option("auto")
@click.option(
    "-i",
    "--interactive",
    is_flag=True,
    help="When an exec fails, open a shell in its container on this terminal "
    "(and hold the terminal for Container.terminal).",
)
@click.option(
    "--explain",
    is_flag=True,
    help="For each step that misses the cache, say which input changed since the last run "
    "of the same pipeline position (shown in the progress view).",
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def run(
    ctx: click.Context,
    labels: tuple[str, ...],
    workdir: Path | None,
    interactive: bool,
    explain: bool,
    progress: str,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND with a session (DAGGER_SESSION_PORT, DAGGER_SESSION_TOKEN); exit with its code.

    Use `--` before COMMAND if it has options of its own: `dirk run -- python ci.py -v`.
    The exit code is COMMAND's: 128+N when a signal N killed it, 127 when it does not exist,
    126 when it cannot be executed. Signals to dirk run are passed on to COMMAND; the session
    ends when COMMAND does.
    """
    setup_logging("WARNING")
    if interactive and not os.isatty(0):
        raise click.UsageError(
            "dirk run -i needs a terminal (its stdin is not a tty) to open shells in failed "
            "steps: run it from a terminal, or leave out -i (in CI, for instance)"
        )
    try:
        if interactive:
            import asyncio

            code = asyncio.run(
                _run_command(
                    _workdir(workdir),
                    _parse_labels(labels),
                    command,
                    interactive,
                    progress,
                    explain,
                )
            )
        else:
            code = _run_command_blocking(
                _workdir(workdir), _parse_labels(labels), command, progress, explain
            )
    except DirkError as exc:
        raise click.ClickException(str(exc)) from exc
    ctx.exit(code)


#: Exit codes of a command that cannot be run, as a shell gives them.
NOT_FOUND_EXIT = 127
NOT_EXECUTABLE_EXIT = 126


def _say(message: str) -> None:
    sys.stderr.write(f"dirk run: {message}\n")
    sys.stderr.flush()


def _warn_version(opened: SessionInfo) -> None:
    from dirk.versions import first_mismatch

    advice = first_mismatch(opened.engine_version, f"at {opened.control}")
    if advice is not None:
        _say(f"warning: {advice}")


def _cannot_start(command: Sequence[str], exc: OSError) -> int:
    """What a shell says and returns when a command cannot be started."""
    if isinstance(exc, FileNotFoundError):
        _say(f"command not found: {command[0]} (not on PATH, or no such file)")
        return NOT_FOUND_EXIT
    _say(f"cannot run {command[0]}: {exc.strerror}")
    return NOT_EXECUTABLE_EXIT


def _exit_code(command: Sequence[str], code: int, relay: _SignalRelay) -> int:
    """The command's exit code (128 + N for a signal N, as shells do), saying what happened
    when a signal ended it or us."""
    shown = shlex.join(command)
    if relay.ending is not None:
        name = signal.Signals(relay.ending).name
        _say(
            f"interrupted by {name}: stopped `{shown}` and ended its session "
            "(the engine cancelled the steps it was running)"
        )
    elif code < 0:
        _say(f"`{shown}` was killed by {signal.Signals(-code).name}")
    return 128 - code if code < 0 else code


def _run_command_blocking(
    workdir: Path,
    labels: Mapping[str, str],
    command: Sequence[str],
    progress: str = "auto",
    explain: bool = False,
) -> int:
    """`dirk run` without -i: the session is opened and attached with blocking I/O (no event
    loop to import and start: `dirk run` is on the start of every pipeline it wraps), the
    command runs, then the session ends however the command ended."""
    import subprocess

    from dirk.sdk.provision import attach, close_session, open_session
    from dirk.wire.driver import BLOCKING, drive

    opened = drive(open_session(workdir, labels, io=BLOCKING, explain=explain))
    attachment = None
    watch: Watch | None = None
    try:
        attachment = drive(attach(opened, io=BLOCKING))
        _warn_version(opened)
        watch = drive(_watch(opened, progress, BLOCKING))
        env = {
            **os.environ,
            "DAGGER_SESSION_PORT": str(opened.port),
            "DAGGER_SESSION_TOKEN": opened.token,
        }
        # Handlers go in before the command starts: a signal in between would otherwise kill
        # this process with its default action and leave the command running unsupervised.
        relay = _SignalRelay()
        previous = {signum: signal.signal(signum, relay.handle) for signum in FORWARDED_SIGNALS}
        try:
            try:
                proc = subprocess.Popen(list(command), env=env)
            except OSError as exc:
                return _cannot_start(command, exc)
            relay.started(proc)
            code = proc.wait()  # a signal runs its handler, then the wait goes on (PEP 475)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    finally:
        try:
            drive(close_session(opened, attachment, io=BLOCKING))
        except DirkError as exc:  # the session ends with the attach connection anyway
            log.warning("could not end the session: %s", exc)
        if watch is not None:  # the session has ended: the stream's last events, the summary
            watch.finish(PROGRESS_DRAIN_S if opened.control is not None else 0.2)
    return _exit_code(command, code, relay)


async def _run_command(
    workdir: Path,
    labels: Mapping[str, str],
    command: Sequence[str],
    interactive: bool = False,
    progress: str = "auto",
    explain: bool = False,
) -> int:
    """`dirk run -i`: on an event loop, which also holds the session's terminal."""
    from dirk.sdk.provision import held_session

    if interactive and progress == "auto":
        progress = "plain"  # a shell of a failed step gets the terminal: no live redraws
    # While a shell has the terminal, the view's records wait (cli.shell_gate).
    gate = ShellGate() if interactive else None
    # Exits in reverse: the session ends first, then the view gets its last events.
    wrap = gate.wrap if gate is not None else None
    session = held_session(workdir, labels, explain=explain)
    async with _shown(progress, wrap) as show, session as opened:
        _warn_version(opened)
        await show(opened)
        env = {
            **os.environ,
            "DAGGER_SESSION_PORT": str(opened.port),
            "DAGGER_SESSION_TOKEN": opened.token,
        }
        on_shell = gate.shell if gate is not None else None
        async with _terminal_held(opened, interactive, on_shell) as held:
            if held:
                from dirk.sdk.terminal import HELD_ENV

                env[HELD_ENV] = "1"
            return await _run_child(command, env)


@contextlib.asynccontextmanager
async def _terminal_held(
    opened: SessionInfo, interactive: bool, on_shell: Callable[[bool], None] | None = None
) -> AsyncIterator[bool]:
    """With -i: hold the session's terminal (shells of failed execs and Container.terminal
    open on ours, not the command's) for the block; yields whether it is held."""
    if not interactive:
        yield False
        return
    import asyncio

    from dirk.sdk.terminal import hold_terminal

    ready = asyncio.Event()
    holder = asyncio.ensure_future(
        hold_terminal(
            opened.query_address, opened.token, on_failure=True, ready=ready, on_shell=on_shell
        )
    )
    waiter = asyncio.ensure_future(ready.wait())
    await asyncio.wait({holder, waiter}, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if not ready.is_set():
        holder.result()  # raises why the terminal could not be held
    try:
        yield True
    finally:
        holder.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await holder


async def _run_child(command: Sequence[str], env: Mapping[str, str]) -> int:
    """Run the command with `env`; its exit code (128 + N for a signal N, as shells do)."""
    import asyncio

    # Handlers go in before the command starts: a signal in between would otherwise kill
    # this process with its default action and leave the command running unsupervised.
    relay = _SignalRelay()
    loop = asyncio.get_running_loop()
    for signum in FORWARDED_SIGNALS:
        loop.add_signal_handler(signum, relay.receive, signum)
    try:
        try:
            proc = await asyncio.create_subprocess_exec(*command, env=env)
        except OSError as exc:
            return _cannot_start(command, exc)
        relay.started(proc)
        code = await proc.wait()
    finally:
        for signum in FORWARDED_SIGNALS:
            loop.remove_signal_handler(signum)
    return _exit_code(command, code, relay)


class _Child(Protocol):
    """The command's process: a `subprocess.Popen` or an asyncio subprocess."""

    def send_signal(self, sig: int) -> None: ...


class _SignalRelay:
    """Forwards signals to the command; those that come before it exists wait for it."""

    def __init__(self) -> None:
        self._proc: _Child | None = None
        self._pending: list[int] = []
        #: The first signal received that ends a session (SIGINT, SIGTERM, SIGHUP), if any.
        self.ending: int | None = None

    def handle(self, signum: int, frame: Any) -> None:
        """A `signal.signal` handler."""
        self.receive(signum)

    def receive(self, signum: int) -> None:
        if signum in ENDING_SIGNALS and self.ending is None:
            self.ending = signum
        if self._proc is None:
            self._pending.append(signum)
        else:
            _forward(self._proc, signum)

    def started(self, proc: _Child) -> None:
        self._proc = proc
        for signum in self._pending:
            _forward(proc, signum)
        self._pending.clear()


def _forward(proc: _Child, signum: int) -> None:
    """Pass a signal on, except Ctrl-C at a terminal: the command got that one already."""
    if signum == signal.SIGINT and _in_terminal_foreground():
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signum)


def _in_terminal_foreground() -> bool:
    """Whether our process group (which the command shares) owns the terminal, so a SIGINT we
    got came from the keyboard and reached the command as well."""
    for fd in (0, 1, 2):
        with contextlib.suppress(OSError):
            if os.isatty(fd):
                return os.tcgetpgrp(fd) == os.getpgrp()
    return False
