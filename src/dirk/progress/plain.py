"""The plain view: one line per event and per output line, in order, for CI logs.

    [1] from python:3.11
    [1] DONE 0.4s
    [2] CACHED pip install -r requirements.txt
    [3] go test ./...
    [3] go test ./...  | ok  pkg 0.2s
    [3] DONE 40.6s

Steps are numbered in the order they first show, so lines of concurrent steps stay readable;
queued steps show nothing until they start. Output lines are cleaned the way a terminal would
show them (a progress bar redrawn with carriage returns is its last state, colours are
removed) and blank ones are left out. A step shown finished is not shown again when a later
query finds it in memory.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, TextIO

from dirk.progress.model import Step, Steps, seconds, summary_text

if TYPE_CHECKING:
    from dirk.wire.event_client import EventRecord

#: Characters of a step's name that prefix each of its output lines.
PREFIX_NAME_CHARS = 32


class PlainView:
    def __init__(self, out: TextIO, *, summary: bool = True) -> None:
        self._out = out
        self._steps = Steps()
        self._summary = summary
        self._lock = threading.Lock()

    @property
    def steps(self) -> Steps:
        return self._steps

    def on_record(self, record: EventRecord) -> None:
        with self._lock:
            lines = self._lines(record)
            if lines:
                self._write(lines)

    def close(self) -> None:
        with self._lock:
            total = self._steps.summary()
            if self._summary and self._steps.shown:
                self._write([f"[dirk] {summary_text(total)}"])

    def _write(self, lines: list[str]) -> None:
        try:
            self._out.write("".join(line + "\n" for line in lines))
            self._out.flush()
        except (OSError, ValueError):  # the log went away (closed pipe): nothing to show on
            pass

    def _lines(self, record: EventRecord) -> list[str]:
        kind = record.get("type")
        if kind == "step":
            return self._step_lines(record)
        if kind == "output":
            step, lines = self._steps.apply_output(record)
            if not lines:
                return []
            self._steps.show(step)
            return [_output_line(step, line) for line in lines]
        if kind == "explain":
            step = self._steps.step(record)
            step.why = str(record.get("reason", ""))
            if step.number and step.state == "running":
                return [f"[{step.number}] WHY {step.why}"]
            return []
        if kind == "dropped":
            lines_dropped, events = int(record.get("lines", 0)), int(record.get("events", 0))
            what = [f"{lines_dropped} output lines"] if lines_dropped else []
            what += [f"{events} events"] if events else []
            return [f"[dirk] {' and '.join(what)} dropped: this log fell behind the engine"]
        return []

    def _step_lines(self, record: EventRecord) -> list[str]:
        step, before = self._steps.apply_state(record)
        state = step.state
        if state == "queued" or (state == "cached" and before in ("done", "cached")):
            return []
        if before == state:  # the same step reported again (e.g. found in memory once more)
            return []
        new = self._steps.show(step)
        n = step.number
        if state == "running":
            return [f"[{n}] {step.name}"] + ([f"[{n}] WHY {step.why}"] if step.why else [])
        if state == "cached":
            return [f"[{n}] CACHED {step.name}"]
        lines = [_output_line(step, line) for line in self._steps.flush(step)]
        if state == "done":
            lines.append(f"[{n}] DONE {seconds(step.duration)}")
        elif state == "failed":
            name = f" {step.name}:" if new else ""
            first = step.error.strip().splitlines()[0] if step.error.strip() else "failed"
            lines.append(f"[{n}] ERROR{name} {first}")
        elif state == "cancelled":
            if new and not step.started:
                self._steps.shown.pop()  # never started, never shown: stays unnumbered
                step.number = 0
                return lines
            why = f" ({step.error})" if step.error else ""
            lines.append(f"[{n}] CANCELLED{why}")
        return lines


def _output_line(step: Step, line: str) -> str:
    name = step.name
    if len(name) > PREFIX_NAME_CHARS:
        name = name[: PREFIX_NAME_CHARS - 1] + "\u2026"
    return f"[{step.number}] {name}  | {line}"
