"""What a user sees while `dirk run` runs a pipeline: the plain lines of a CI log, the live
view at a terminal (a pty), and no secret in either; through a real engine and containers."""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from tests.integration.sdk_engine import RunningEngine, clean_env, foreground_engine

pytestmark = pytest.mark.integration

PROGRAM = Path(__file__).with_name("progress_pipeline.py")
DIRK = Path(sys.executable).with_name("dirk")
REPO = Path(__file__).resolve().parents[2]
#: The exec's name as the progress shows it (the command, as a shell would read it).
EXEC_NAME = "sh -c \"echo go {nonce}; echo; printf 'get 10%%\\rget 100%%\\n'; echo end\""
#: Durations vary; everything else on a line is exact.
_SECONDS = re.compile(r"\b\d+(\.\d)?s\b|\b\d+m\d\ds\b")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-B]|\r")


@pytest.fixture(scope="module")
def engine() -> Iterator[RunningEngine]:
    yield from foreground_engine()


def run_plain(
    engine: RunningEngine, image: str, nonce: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    env = clean_env(engine.state_dir, PYTHONPATH=str(REPO / "src"))
    result = subprocess.run(
        [
            str(DIRK),
            "run",
            "--progress",
            "plain",
            "--",
            sys.executable,
            str(PROGRAM),
            image,
            nonce,
            *extra,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    return result


def timeless(text: str) -> list[str]:
    return [_SECONDS.sub("Xs", line) for line in text.splitlines()]


def test_plain_progress_is_one_prefixed_line_per_event_and_output_line(
    engine: RunningEngine, busybox_ref: str
) -> None:
    nonce = secrets.token_hex(6)
    name = EXEC_NAME.format(nonce=nonce)
    short = name[:31] + "\u2026"
    first = run_plain(engine, busybox_ref, nonce)
    # (read as text: the carriage return reads as a line break)
    assert first.stdout == f"go {nonce}\n\nget 10%\nget 100%\nend\n"
    assert timeless(first.stderr) == [
        f"[1] from {busybox_ref}",
        "[1] DONE Xs",
        f"[2] {name}",
        f"[2] {short}  | go {nonce}",
        f"[2] {short}  | get 100%",
        f"[2] {short}  | end",
        "[2] DONE Xs",
        "[dirk] 2 steps: 2 run, 0 cached; Xs in all",
    ]
    again = run_plain(engine, busybox_ref, nonce)
    assert again.stdout == first.stdout
    assert timeless(again.stderr) == [
        f"[1] CACHED {name}",
        "[dirk] 1 step: 0 run, 1 cached; the cache saved Xs; Xs in all",
    ]
    # What the cache saved is what the step took when it ran.
    ran = re.search(r"\[2\] DONE (\d+\.\d)s", first.stderr)
    saved = re.search(r"the cache saved (\d+\.\d)s", again.stderr)
    assert ran and saved and ran.group(1) == saved.group(1)


def test_a_secret_printed_in_two_writes_is_scrubbed_in_the_stream(
    engine: RunningEngine, busybox_ref: str
) -> None:
    value = secrets.token_hex(16)
    result = run_plain(engine, busybox_ref, secrets.token_hex(6), value)
    assert "a***b" in result.stdout
    assert any(line.endswith("| a***b") for line in result.stderr.splitlines()), result.stderr
    assert value not in result.stderr and value[:10] not in result.stderr
    assert value[10:] not in result.stderr


def test_the_live_view_at_a_terminal_ends_with_the_steps_and_a_summary(
    engine: RunningEngine, python_ref: str
) -> None:
    """(python:3.11, which no other test of this engine pulls: the pull shows as a step.)"""
    nonce = secrets.token_hex(6)
    env = clean_env(engine.state_dir, PYTHONPATH=str(REPO / "src"), TERM="xterm-256color")
    env.pop("CI", None)
    child = pexpect.spawn(
        str(DIRK),
        ["run", "--", sys.executable, str(PROGRAM), python_ref, nonce],  # auto: a terminal
        env=env,
        cwd=str(REPO),
        dimensions=(30, 120),
        encoding="utf-8",
        codec_errors="replace",
        timeout=180,
    )
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    screen = _ANSI.sub("", child.before or "")
    assert "\x1b[" not in screen
    final = screen[screen.rindex("\u2714 [1]") :]  # the last picture drawn
    assert f"\u2714 [1] from {python_ref}" in final
    assert '\u2714 [2] sh -c "echo go' in final and "<- 1" in final
    assert re.search(r"2 steps: 2 run, 0 cached; \d+\.\ds in all", final), final
    assert f"go {nonce}" in screen  # the program's own output


def test_an_sdk_program_shows_the_same_lines_itself(
    engine: RunningEngine, busybox_ref: str
) -> None:
    """No `dirk run`: the program opens its own session; DIRK_PROGRESS=plain is
    `Config(progress="plain")` for every connection."""
    nonce = secrets.token_hex(6)
    env = clean_env(engine.state_dir, PYTHONPATH=str(REPO / "src"), DIRK_PROGRESS="plain")
    result = subprocess.run(
        [sys.executable, str(PROGRAM), busybox_ref, nonce],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    name = EXEC_NAME.format(nonce=nonce)
    lines = timeless(result.stderr)
    assert f"[1] {name}" in lines or f"[2] {name}" in lines, result.stderr
    assert lines[-2:] == [lines[-2], lines[-1]] and lines[-1].startswith("[dirk] ")
    assert any(line.endswith(f"| go {nonce}") for line in lines)
