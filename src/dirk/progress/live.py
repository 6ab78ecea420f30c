"""The tty view: a live picture of the pipeline's steps, redrawn in place (rich).

Each step is a row: its state, number, name, time, the steps it takes as inputs (the DAG's
edges, as `<- 1 2`), and under a running or failed step its last output lines. A pipeline
with more steps than the terminal has rows shows the running and failed ones and the latest
others. When the stream ends the last picture stays on screen with a summary under it: how
many steps ran, how many came from the cache and the time the cache saved (what those steps
took when they ran).

Only this module imports rich, and only when a live view is shown. A command that `dirk run`
starts writes to the same terminal on its own: its lines land between redraws.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

from dirk.progress.model import Step, Steps, seconds, summary_text

if TYPE_CHECKING:
    from dirk.wire.event_client import EventRecord

#: How each state shows: (symbol, style).
STATE_STYLE: dict[str, tuple[str, str]] = {
    "queued": ("\u00b7", "dim"),
    "running": ("\u25b6", "bold yellow"),
    "done": ("\u2714", "green"),
    "cached": ("\u21bb", "cyan"),
    "failed": ("\u2718", "bold red"),
    "cancelled": ("\u2298", "magenta"),
}
#: Rows the view leaves to the terminal's scrollback (prompt, summary).
SPARE_ROWS = 4


class LiveView:
    def __init__(
        self, out: TextIO, *, console: Console | None = None, redirect: bool = False
    ) -> None:
        """`redirect`: this process's own prints (sys.stdout, sys.stderr) show above the
        picture while it is live (an SDK program's view), instead of being drawn over."""
        self.console = console or Console(file=out, stderr=False, highlight=False)
        self._steps = Steps()
        self._lock = threading.Lock()
        self._live = Live(
            get_renderable=self._render,
            console=self.console,
            refresh_per_second=8,
            transient=False,
            redirect_stdout=redirect,
            redirect_stderr=redirect,
        )
        self._live.start()
        self._closed = False

    @property
    def steps(self) -> Steps:
        return self._steps

    def on_record(self, record: EventRecord) -> None:
        with self._lock:
            kind = record.get("type")
            if kind == "step":
                step, _ = self._steps.apply_state(record)
                if step.state != "queued" and not (
                    step.state == "cancelled" and step.started is None
                ):
                    self._steps.show(step)
                if step.finished:
                    self._steps.flush(step)
            elif kind == "output":
                step, _ = self._steps.apply_output(record)
            elif kind == "explain":
                self._steps.step(record).why = str(record.get("reason", ""))
            elif kind == "dropped":
                self._steps.dropped_lines += int(record.get("lines", 0))
                self._steps.dropped_events += int(record.get("events", 0))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._live.refresh()
        self._live.stop()
        with self._lock:
            if self._steps.shown:
                total = self._steps.summary()
                self.console.print(Text(summary_text(total), style="bold"))

    def render(self) -> RenderableType:
        return self._render()

    def _render(self) -> RenderableType:
        with self._lock:
            now = time.time()
            rows = self._rows(now)
        return Group(*rows)

    def _rows(self, now: float) -> list[Text]:
        steps = self._steps
        queued = [s for s in steps.by_id.values() if s.state == "queued"]
        room = max(5, self.console.height - SPARE_ROWS)
        shown = steps.shown
        rows: list[Text] = []
        hidden = 0
        if len(shown) > room:
            keep = {id(s) for s in shown if s.state in ("running", "failed")}
            latest = [s for s in shown if id(s) not in keep][-max(0, room - len(keep)) :]
            keep.update(id(s) for s in latest)
            hidden = sum(1 for s in shown if id(s) not in keep)
            visible = [s for s in shown if id(s) in keep]
        else:
            visible = list(shown)
        if hidden:
            rows.append(Text(f"  \u2026 {hidden} more steps finished", style="dim"))
        for step in visible:
            rows.append(self._row(step, now))
            if step.why:
                rows.append(Text(f"      why: {step.why}", style="yellow", overflow="ellipsis"))
            if step.state in ("running", "failed"):
                for line in step.tail:
                    rows.append(
                        Text(f"      {line}", style="dim", overflow="ellipsis", no_wrap=True)
                    )
        if queued:
            names = ", ".join(s.name for s in queued[:3])
            more = f" and {len(queued) - 3} more" if len(queued) > 3 else ""
            rows.append(Text(f"  \u00b7 queued: {names}{more}", style="dim", no_wrap=True))
        if steps.dropped_lines or steps.dropped_events:
            rows.append(
                Text(
                    f"  {steps.dropped_lines} output lines dropped: the view fell behind",
                    style="yellow",
                )
            )
        return rows

    def _row(self, step: Step, now: float) -> Text:
        symbol, style = STATE_STYLE.get(step.state, ("?", ""))
        row = Text(no_wrap=True, overflow="ellipsis")
        row.append(f"{symbol} ", style=style)
        row.append(f"[{step.number}] ", style="bold")
        row.append(step.name)
        if step.state == "cached":
            row.append("  cached", style="cyan")
        elif step.state != "queued":
            row.append(f"  {seconds(step.elapsed(now))}", style="dim" if step.finished else "")
        if step.state == "failed" and step.error:
            row.append(f"  {step.error.strip().splitlines()[0]}", style="red")
        inputs = [
            self._steps.by_id[i].number
            for i in step.inputs
            if i in self._steps.by_id and self._steps.by_id[i].number
        ]
        if inputs:
            row.append("  <- " + " ".join(str(n) for n in inputs), style="dim")
        return row
