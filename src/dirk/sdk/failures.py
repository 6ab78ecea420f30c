"""What a program's user reads when a pipeline fails or is interrupted.

Every leaf the program awaits runs inside `tracked(history)`: a dirk error leaving it gets the
pipeline that led to it (`error.pipeline`, `error.location`, and a note under the message that
any traceback shows), and the failure or cancellation goes into a small journal. From the
journal and the exception, `report` writes a short account: which step failed (its command,
exit code, the tail of its output, the pipeline, the user's lines) and which steps were
cancelled because of it, or, after Ctrl-C, which steps were stopped. `install_excepthook` (run
when a connection opens) prints that account instead of the traceback of an uncaught dirk
error, an `ExceptionGroup` of them (a task group where one of several steps failed) or a
`KeyboardInterrupt`; DIRK_TRACEBACK=1 prints the full traceback after it.
"""

from __future__ import annotations

import collections
import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Any, NamedTuple, TextIO

from dirk.errors import CommandNotFoundError, DirkError, ExecError, QueryError, _tail_lines
from dirk.sdk.callsite import Site
from dirk.sdk.query import Call
from dirk.sdk.steps import call_text, chain_text, command_text

#: Set to 1 for the full traceback of an uncaught dirk error, after its report.
TRACEBACK_ENV = "DIRK_TRACEBACK"
#: How many failures and cancellations the journal keeps.
JOURNAL_SIZE = 256
#: At most this many cancelled steps are listed by name.
LISTED_STEPS = 20


class StepRecord(NamedTuple):
    """A leaf that failed or was cancelled."""

    cancelled: bool
    history: tuple[Call, ...]
    at: float


_journal: collections.deque[StepRecord] = collections.deque(maxlen=JOURNAL_SIZE)
#: When a tracked leaf last finished without being cancelled (monotonic time).
_last_finished = 0.0


@contextlib.contextmanager
def tracked(history: tuple[Call, ...]) -> Iterator[None]:
    """Records a failure or cancellation of the leaf `history` ends with (see module doc)."""
    global _last_finished
    try:
        yield
    except DirkError as error:
        _last_finished = time.monotonic()
        annotate(error, history)
        _journal.append(StepRecord(False, history, _last_finished))
        raise
    except BaseException as exc:
        if _is_cancellation(exc):
            _journal.append(StepRecord(True, history, time.monotonic()))
        raise
    else:
        _last_finished = time.monotonic()


def _is_cancellation(exc: BaseException) -> bool:
    """Ctrl-C, or a cancelled task (asyncio's and trio's cancellation), told apart without
    importing an event loop library (a sync program has none)."""
    return isinstance(exc, KeyboardInterrupt) or type(exc).__name__ in (
        "CancelledError",
        "Cancelled",
    )


# --- what an error learns about its pipeline -------------------------------------------------


def annotate(error: DirkError, history: tuple[Call, ...]) -> None:
    """Gives `error` its pipeline and the user's lines (once: the innermost leaf wins)."""
    if getattr(error, "_dirk_history", None) is not None:
        return
    steps = _failed_steps(error, history)
    error._dirk_history = steps  # type: ignore[attr-defined]
    error._dirk_failed_at = time.monotonic()  # type: ignore[attr-defined]
    pipeline = chain_text(steps)
    location = _location(error, steps, history)
    if isinstance(error, QueryError):
        error.pipeline, error.location = pipeline, location
    error.add_note(f"pipeline: {pipeline}")
    if location:
        error.add_note(f"at: {location}")


def _failed_steps(error: DirkError, history: tuple[Call, ...]) -> tuple[Call, ...]:
    """The calls up to the failed exec (in `history` or in an object argument of it), else
    `history` itself."""
    if isinstance(error, ExecError) and error.command:
        found = _find_exec(history, tuple(error.command), depth=0)
        if found is not None:
            return found
    return history


def _find_exec(
    chain: Sequence[Call], command: tuple[str, ...], depth: int
) -> tuple[Call, ...] | None:
    for index, call in enumerate(chain):
        if call.field == "withExec" and dict(call.args).get("args") == command:
            return tuple(chain[: index + 1])
    if depth > 8:
        return None
    for call in chain:
        for _, value in call.args:
            for obj in _objects(value):
                found = _find_exec(obj._history(), command, depth + 1)
                if found is not None:
                    return found
    return None


def _objects(value: Any) -> list[Any]:
    if hasattr(value, "_history"):
        return [value]
    if isinstance(value, tuple):
        return [obj for each in value for obj in _objects(each)]
    return []


def _location(error: DirkError, steps: tuple[Call, ...], history: tuple[Call, ...]) -> str:
    """`ci.py:12 in test (with_exec), awaited at ci.py:20 in main`."""
    made = next((call for call in reversed(steps) if call.site is not None), None)
    leaf = history[-1] if history else None
    parts = []
    if made is not None and made.site is not None:
        parts.append(f"{made.site} ({call_text(made).split(' ', 1)[0]})")
    if leaf is not None and leaf.site is not None and (made is None or leaf.site != made.site):
        parts.append(f"awaited at {leaf.site}" if parts else str(leaf.site))
    return ", ".join(parts)


def _site_of(history: tuple[Call, ...]) -> Site | None:
    return history[-1].site if history else None


# --- the report -------------------------------------------------------------------------------


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (possibly nested) exception groups, in order."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


def report(exc: BaseException, arrow: str = "→") -> str | None:
    """The short account of an uncaught exception, or None when it holds no dirk error and is
    not an interruption (then the usual traceback is better)."""
    found = leaves(exc)
    if any(isinstance(leaf, KeyboardInterrupt) for leaf in found):
        return _interrupted(arrow)
    errors = [leaf for leaf in found if isinstance(leaf, DirkError)]
    if not errors:
        return None
    lines: list[str] = []
    for error in errors:
        lines.extend(_failure(error, arrow))
    for other in found:
        if not isinstance(other, DirkError):
            import traceback

            lines.append("also raised:")
            lines.extend(
                "  " + line
                for chunk in traceback.format_exception(other)
                for line in chunk.rstrip("\n").splitlines()
            )
    since = min(getattr(error, "_dirk_failed_at", time.monotonic()) for error in errors)
    cancelled = [record for record in _journal if record.cancelled and record.at >= since]
    if cancelled:
        lines.append(f"cancelled because of the failure ({len(cancelled)}):")
        lines.extend(_step_lines(cancelled, arrow))
    lines.append(f"(set {TRACEBACK_ENV}=1 for the full traceback)")
    return "\n".join(lines)


def _failure(error: DirkError, arrow: str) -> list[str]:
    if isinstance(error, CommandNotFoundError):
        head = f"✗ step failed: {error.message}"
    elif isinstance(error, ExecError):
        head = f"✗ step failed: `{command_text(error.command)}` exited with code {error.exit_code}"
    else:
        head = f"✗ {type(error).__name__}: {error}"
    lines = [head]
    history = getattr(error, "_dirk_history", None)
    if history:
        lines.append(f"  pipeline: {chain_text(history, arrow)}")
    location = getattr(error, "location", "")
    if location:
        lines.append(f"  at: {location}")
    if isinstance(error, ExecError):
        for name, text in (("stdout", error.stdout), ("stderr", error.stderr)):
            tail = _tail_lines(text)
            if tail:
                lines.append(f"  {name} (last lines):")
                lines.extend("  " + line for line in tail.splitlines())
    return lines


def _step_lines(records: Sequence[StepRecord], arrow: str) -> list[str]:
    lines = []
    for record in records[:LISTED_STEPS]:
        site = _site_of(record.history)
        where = f" (at {site})" if site is not None else ""
        lines.append(f"  ■ {chain_text(record.history, arrow)}{where}")
    if len(records) > LISTED_STEPS:
        lines.append(f"  ... and {len(records) - LISTED_STEPS} more")
    return lines


def _interrupted(arrow: str) -> str:
    stopped = [record for record in _journal if record.cancelled and record.at >= _last_finished]
    lines = ["✗ interrupted (Ctrl-C): the session was cancelled; the engine stops its containers"]
    if stopped:
        lines.append(f"stopped while running ({len(stopped)}):")
        lines.extend(_step_lines(stopped, arrow))
    else:
        lines.append("no pipeline step was running")
    return "\n".join(lines)


# --- sys.excepthook ---------------------------------------------------------------------------

_install_lock = threading.Lock()
_installed = False


def install_excepthook() -> None:
    """Makes uncaught dirk errors, groups of them and Ctrl-C print `report` (once per process;
    any other exception goes to the hook that was there before)."""
    global _installed
    with _install_lock:
        if _installed:
            return
        _installed = True
        previous = sys.excepthook

        def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
            try:
                text = report(exc, _arrow(sys.stderr))
            except Exception:  # never hide the error behind a bug of the report
                text = None
            if text is None or os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
                previous(kind, exc, tb)
            if text is not None:
                _write(sys.stderr, text)

        sys.excepthook = hook


def _arrow(stream: TextIO) -> str:
    try:
        "→✗■".encode(stream.encoding or "ascii")
    except (LookupError, UnicodeEncodeError):
        return "->"
    return "→"


def _write(stream: TextIO, text: str) -> None:
    if _arrow(stream) == "->":
        text = text.replace("✗", "x").replace("■", "-").replace("…", "...")
    stream.write(text + "\n")
    stream.flush()
