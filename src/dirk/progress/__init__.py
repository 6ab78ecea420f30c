"""What a person sees while a pipeline runs: views of a session's step events.

The engine streams each session's events (`GET /sessions/<token>/events`, read by
`dirk.wire.event_client`); a view turns them into text. `plain` writes one prefixed line per
event and per output line, for CI logs and `log_output`; `tty` is a live view of the steps
(rich, imported only when that view is shown); `quiet` shows nothing. `dirk run --progress`,
`dirk session` and the SDK's `Config(progress=...)` all pick a view here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal, Protocol, TextIO

if TYPE_CHECKING:
    from dirk.wire.event_client import EventRecord

#: What `--progress` and `Config.progress` accept.
Mode = Literal["auto", "tty", "plain", "quiet"]
MODES: tuple[Mode, ...] = ("auto", "tty", "plain", "quiet")
#: The environment variable that sets the mode where none is given (as DAGGER_PROGRESS).
PROGRESS_ENV = "DIRK_PROGRESS"


class View(Protocol):
    """Receives the records of one session's event stream (from the stream's thread)."""

    def on_record(self, record: EventRecord) -> None: ...

    def close(self) -> None:
        """The stream ended: show the end state and the summary; release the terminal."""
        ...


def resolve_mode(
    mode: str, stream: TextIO, env: Mapping[str, str]
) -> Literal["tty", "plain", "quiet"]:
    """The view `mode` means for output to `stream`: `auto` is `tty` when `stream` is a
    terminal and CI is not set, else `plain`. Raises ValueError for an unknown mode."""
    if mode not in MODES:
        raise ValueError(f"unknown progress mode {mode!r}: use one of {', '.join(MODES)}")
    if mode == "auto":
        return "tty" if _is_terminal(stream) and not env.get("CI") else "plain"
    return mode


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class QuietView:
    """Shows nothing."""

    def on_record(self, record: EventRecord) -> None:
        pass

    def close(self) -> None:
        pass


def make_view(
    mode: str, stream: TextIO, env: Mapping[str, str], *, in_process: bool = False
) -> View:
    """The view for `mode` writing to `stream` (see `resolve_mode`); `in_process`: a live
    view shows this program's own prints above it (the SDK's)."""
    chosen = resolve_mode(mode, stream, env)
    if chosen == "quiet":
        return QuietView()
    if chosen == "plain":
        return _PlainOnFirstRecord(stream)
    from dirk.progress.live import LiveView

    return LiveView(stream, redirect=in_process)


class _PlainOnFirstRecord:
    """The plain view, made when the first record comes: a session that runs no step (`dirk
    run -- true`) imports neither the view nor its model. A plain view that saw nothing shows
    nothing at its close either."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._view: View | None = None

    def on_record(self, record: EventRecord) -> None:
        if self._view is None:
            from dirk.progress.plain import PlainView

            self._view = PlainView(self._stream)
        self._view.on_record(record)

    def close(self) -> None:
        if self._view is not None:
            self._view.close()
