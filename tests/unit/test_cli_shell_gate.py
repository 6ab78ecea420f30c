"""`dirk run -i` holds progress records back while a shell has the terminal, then shows
them in order."""

from __future__ import annotations

from typing import Any

from dirk.cli.shell_gate import ShellGate


class Recorder:
    def __init__(self) -> None:
        self.shown: list[Any] = []
        self.closed = False

    def on_record(self, record: Any) -> None:
        self.shown.append(record)

    def close(self) -> None:
        self.closed = True


def test_records_wait_for_the_shell_to_exit() -> None:
    gate = ShellGate()
    recorder = Recorder()
    view = gate.wrap(recorder)  # type: ignore[arg-type]
    view.on_record("before")
    gate.shell(True)
    view.on_record("during 1")
    view.on_record("during 2")
    assert recorder.shown == ["before"]
    gate.shell(False)
    view.on_record("after")
    assert recorder.shown == ["before", "during 1", "during 2", "after"]


def test_closing_shows_what_was_held() -> None:
    gate = ShellGate()
    recorder = Recorder()
    view = gate.wrap(recorder)  # type: ignore[arg-type]
    gate.shell(True)
    view.on_record("held")
    view.close()
    assert recorder.shown == ["held"] and recorder.closed
