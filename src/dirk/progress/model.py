"""The state of a pipeline as its event stream tells it: each step's number, name, state,
times, inputs and last output lines, and the totals a summary shows.

Views feed every record to one `Steps` and draw from it. Steps are numbered in the order they
first show (start or cache hit), so `[3]` means the same step in every line of a log. The
values are plain dataclasses, not attrs: every `dirk run` imports this model, and importing
attrs would be a tenth of that command's start.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections import deque
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dirk.wire.event_client import EventRecord

#: Last output lines a running step keeps for the live view.
TAIL_LINES = 4
#: Longest unfinished output line kept; past it, the text so far counts as a line.
LINE_LIMIT = 4096
#: Terminal control sequences (colours, cursor moves): a log shows the text only.
_CONTROL = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]|[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f]")

#: The end states of a step.
FINISHED = frozenset({"done", "cached", "failed", "cancelled"})


def clean_line(text: str) -> str:
    """What a terminal would end up showing of one output line: the text after its last
    carriage return (a progress bar redrawn in place is its last state), without control
    sequences or trailing blanks."""
    if "\r" in text:
        parts = [p for p in text.split("\r") if p]
        text = parts[-1] if parts else ""
    return _CONTROL.sub("", text).rstrip()


@dataclasses.dataclass(slots=True)
class Lines:
    """Splits one output stream into whole lines (text after the last `\\n` waits)."""

    partial: str = ""

    def feed(self, data: str) -> list[str]:
        text = self.partial + data
        *whole, self.partial = text.split("\n")
        if len(self.partial) > LINE_LIMIT:
            whole.append(self.partial)
            self.partial = ""
        return whole

    def flush(self) -> list[str]:
        rest, self.partial = self.partial, ""
        return [rest] if rest else []


@dataclasses.dataclass(slots=True)
class Step:
    id: str
    name: str
    state: str = "queued"
    number: int = 0
    inputs: tuple[str, ...] = ()
    started: float | None = None
    ended: float | None = None
    #: Seconds the run took (done), or took when it ran (cached, 0 when unknown).
    duration: float = 0.0
    error: str = ""
    #: Why it missed the cache, when the session asked (`dirk run --explain`).
    why: str = ""
    tail: deque[str] = dataclasses.field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    streams: dict[str, Lines] = dataclasses.field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    def elapsed(self, now: float) -> float:
        if self.state == "done":
            return self.duration
        if self.started is None:
            return 0.0
        return (self.ended if self.ended is not None else now) - self.started


@dataclasses.dataclass(slots=True)
class Summary:
    run: int = 0
    cached: int = 0
    failed: int = 0
    cancelled: int = 0
    #: Seconds the cached steps took when they ran: what the cache saved.
    saved: float = 0.0
    elapsed: float = 0.0


class Steps:
    """Every step seen so far, by id, and the stream's totals."""

    def __init__(self, clock: Any = time.time) -> None:
        self.by_id: dict[str, Step] = {}
        self.shown: list[Step] = []
        self.dropped_lines = 0
        self.dropped_events = 0
        self._clock = clock
        self.first: float | None = None
        self.last: float | None = None

    def step(self, record: EventRecord) -> Step:
        step_id = str(record.get("id", ""))
        step = self.by_id.get(step_id)
        if step is None:
            step = self.by_id[step_id] = Step(step_id, str(record.get("name", "")))
        return step

    def show(self, step: Step) -> bool:
        """Number `step` if it is new to the view; True when it was just numbered."""
        if step.number:
            return False
        self.shown.append(step)
        step.number = len(self.shown)
        return True

    def apply_state(self, record: EventRecord) -> tuple[Step, str]:
        """Apply a `step` record; returns the step and its state before."""
        step = self.step(record)
        before = step.state
        at = self._at(record)
        self._seen(at)
        state = str(record.get("state", ""))
        if record.get("inputs"):
            step.inputs = tuple(str(i) for i in record["inputs"])
        if state == "cached" and before in FINISHED:
            return step, before  # a memory hit of a step this view has shown finished
        step.state = state
        if state == "running":
            step.started = at
        elif state in FINISHED:
            step.ended = at
            if "duration" in record:
                step.duration = float(record["duration"])
            elif step.started is not None:
                step.duration = at - step.started
            step.error = str(record.get("error") or record.get("reason") or "")
        return step, before

    def apply_output(self, record: EventRecord) -> tuple[Step, list[str]]:
        """Apply an `output` record; returns the step and the whole lines it completed,
        cleaned (`clean_line`), blank ones left out."""
        step = self.step(record)
        self._seen(self._at(record))
        stream = str(record.get("stream", "stdout"))
        lines = step.streams.setdefault(stream, Lines()).feed(str(record.get("data", "")))
        return step, self._keep(step, lines)

    def flush(self, step: Step) -> list[str]:
        """The unfinished last lines of a step's streams (it ended)."""
        lines: list[str] = []
        for stream in step.streams.values():
            lines.extend(stream.flush())
        return self._keep(step, lines)

    def _keep(self, step: Step, lines: list[str]) -> list[str]:
        kept = [c for c in (clean_line(line) for line in lines) if c.strip()]
        step.tail.extend(kept)
        return kept

    def _at(self, record: EventRecord) -> float:
        at = record.get("at")
        return float(at) if at is not None else float(self._clock())

    def _seen(self, at: float) -> None:
        if self.first is None:
            self.first = at
        self.last = at

    def summary(self) -> Summary:
        total = Summary()
        for step in self.by_id.values():
            if step.state == "done":
                total.run += 1
            elif step.state == "cached":
                total.cached += 1
                total.saved += step.duration
            elif step.state == "failed":
                total.failed += 1
            elif step.state == "cancelled":
                total.cancelled += 1
        if self.first is not None and self.last is not None:
            total.elapsed = self.last - self.first
        return total


def seconds(value: float) -> str:
    """A duration as a log shows it: 0.2s, 40.6s, 2m05s, 1h02m."""
    if value < 60:
        return f"{value:.1f}s"
    minutes, secs = divmod(round(value), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def summary_text(total: Summary) -> str:
    """One line: what ran, what the cache gave, what it saved."""
    parts = [f"{total.run} run", f"{total.cached} cached"]
    if total.failed:
        parts.append(f"{total.failed} failed")
    if total.cancelled:
        parts.append(f"{total.cancelled} cancelled")
    steps = total.run + total.cached + total.failed + total.cancelled
    text = f"{steps} step{'' if steps == 1 else 's'}: " + ", ".join(parts)
    if total.cached:
        text += f"; the cache saved {seconds(total.saved)}"
    return text + f"; {seconds(total.elapsed)} in all"
