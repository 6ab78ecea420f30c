"""The views of a step stream: plain lines for logs, the live picture, the mode rules."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console

from dirk.progress import make_view, resolve_mode
from dirk.progress.live import LiveView
from dirk.progress.model import clean_line, seconds
from dirk.progress.plain import PlainView


def step(sid: str, state: str, name: str, at: float, **extra: Any) -> dict[str, Any]:
    return {"type": "step", "id": sid, "state": state, "name": name, "at": at, **extra}


def out(sid: str, data: str, at: float, stream: str = "stdout") -> dict[str, Any]:
    return {"type": "output", "id": sid, "stream": stream, "data": data, "at": at}


#: Two concurrent steps after a cached pull, one of them failing, a third cancelled.
PIPELINE = [
    step("p", "cached", "from python:3.11", 0.0, duration=12.5, cached=True),
    step("t", "queued", "go test ./...", 0.0, inputs=["p"]),
    step("l", "queued", "ruff check .", 0.0, inputs=["p"]),
    step("t", "running", "go test ./...", 0.1, inputs=["p"]),
    step("l", "running", "ruff check .", 0.2, inputs=["p"]),
    out("t", "ok  pkg/a 0.2s\n\n\nok  pkg", 1.0),
    out("l", "\x1b[31mE501\x1b[0m line too long\n", 1.1),
    out("t", "/b 0.3s\n", 1.2),
    out("l", "10%\r50%\r100%\n", 1.3),
    step("l", "failed", "ruff check .", 2.0, error="exit code: 1\nmore detail"),
    step("t", "cancelled", "go test ./...", 2.1),
    step("x", "cancelled", "deploy", 2.1, reason="an input failed"),
    step("p", "cached", "from python:3.11", 2.2, duration=12.5, cached=True),  # memo hit again
]


def test_plain_lines_are_prefixed_by_step_number_in_order() -> None:
    log = io.StringIO()
    view = PlainView(log)
    for record in PIPELINE:
        view.on_record(record)
    view.close()
    assert log.getvalue().splitlines() == [
        "[1] CACHED from python:3.11",
        "[2] go test ./...",
        "[3] ruff check .",
        "[2] go test ./...  | ok  pkg/a 0.2s",
        "[3] ruff check .  | E501 line too long",
        "[2] go test ./...  | ok  pkg/b 0.3s",
        "[3] ruff check .  | 100%",
        "[3] ERROR exit code: 1",
        "[2] CANCELLED",
        "[dirk] 4 steps: 0 run, 1 cached, 1 failed, 2 cancelled; the cache saved 12.5s; "
        "2.2s in all",
    ]


def test_plain_shows_a_done_step_with_its_time_and_its_last_unfinished_line() -> None:
    log = io.StringIO()
    view = PlainView(log, summary=False)
    for record in [
        step("a", "running", "sh -c 'printf x'", 5.0),
        out("a", "no newline at the end", 6.0),
        step("a", "done", "sh -c 'printf x'", 45.6, duration=40.6),
    ]:
        view.on_record(record)
    view.close()
    assert log.getvalue().splitlines() == [
        "[1] sh -c 'printf x'",
        "[1] sh -c 'printf x'  | no newline at the end",
        "[1] DONE 40.6s",
    ]


def test_plain_says_when_lines_were_dropped() -> None:
    log = io.StringIO()
    view = PlainView(log)
    view.on_record({"type": "dropped", "lines": 120, "events": 0, "at": 1.0})
    assert log.getvalue() == "[dirk] 120 output lines dropped: this log fell behind the engine\n"


def test_output_lines_are_cleaned_as_a_terminal_shows_them() -> None:
    assert clean_line("downloading 10%\rdownloading 99%\rdone   ") == "done"
    assert clean_line("\x1b[1;32mPASS\x1b[0m tests") == "PASS tests"
    assert clean_line("\r") == ""
    assert [seconds(v) for v in (0.04, 40.61, 125, 3725)] == ["0.0s", "40.6s", "2m05s", "1h02m"]


def test_the_live_view_shows_each_step_its_state_and_the_summary() -> None:
    console = Console(record=True, width=100, height=30, force_terminal=True, file=io.StringIO())
    view = LiveView(console.file, console=console)
    for record in PIPELINE[:9]:
        view.on_record(record)
    console.print(view.render())
    running = console.export_text()
    assert "\u21bb [1] from python:3.11  cached" in running
    assert "\u25b6 [2] go test ./...  " in running and "<- 1" in running
    assert "ok  pkg/b 0.3s" in running  # a running step's last lines
    for record in PIPELINE[9:]:
        view.on_record(record)
    view.close()
    final = console.export_text()
    assert "\u2718 [3] ruff check .  1.8s  exit code: 1  <- 1" in final
    assert "\u2298 [2] go test ./..." in final
    assert "4 steps: 0 run, 1 cached, 1 failed, 2 cancelled; the cache saved 12.5s" in final


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("mode", "terminal", "env", "chosen"),
    [
        ("auto", True, {}, "tty"),
        ("auto", True, {"CI": "true"}, "plain"),
        ("auto", False, {}, "plain"),
        ("tty", False, {}, "tty"),
        ("quiet", True, {}, "quiet"),
    ],
)
def test_auto_is_live_only_on_a_terminal_outside_ci(
    mode: str, terminal: bool, env: dict[str, str], chosen: str
) -> None:
    stream = Terminal() if terminal else io.StringIO()
    assert resolve_mode(mode, stream, env) == chosen


def test_an_unknown_mode_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="use one of auto, tty, plain, quiet"):
        make_view("fancy", io.StringIO(), {})
