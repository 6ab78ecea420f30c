"""Where in the user's program a pipeline call was made: the first frame outside dirk.

Recorded by `with_exec` and every leaf, so that a failure can name the line that built the
failing step and the line that awaited it. It costs one frame walk (about 1.3 µs of CPU with
the Call's extra field, on a `with_exec` builder call of about 5.5 µs: `bench/callsite.py`); the
frame itself is never kept, only its file name, line and function.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import FrameType
from typing import NamedTuple

#: Frames from files under this directory are dirk's own.
_DIRK_DIR = str(Path(__file__).resolve().parent.parent) + "/"


class Site(NamedTuple):
    """A line of the user's program (a tuple: the cheapest value to make)."""

    filename: str
    lineno: int
    function: str

    def __str__(self) -> str:
        return f"{short_path(self.filename)}:{self.lineno} in {self.function}"


def caller_site(skip: int = 2) -> Site | None:
    """The first frame outside dirk above the caller of the caller (`skip` frames up)."""
    frame: FrameType | None
    try:
        frame = sys._getframe(skip)
    except ValueError:
        return None
    while frame is not None:
        code = frame.f_code
        if not code.co_filename.startswith(_DIRK_DIR):
            return Site(code.co_filename, frame.f_lineno, code.co_name)
        frame = frame.f_back
    return None


def user_stacklevel() -> int:
    """The `stacklevel` for `warnings.warn` that points at the first frame outside dirk."""
    level = 1
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_DIRK_DIR):
        level += 1
        frame = frame.f_back
    return level


def short_path(filename: str) -> str:
    """`filename` relative to the current directory when it is below it."""
    try:
        return str(Path(filename).relative_to(Path.cwd()))
    except ValueError:
        return filename
