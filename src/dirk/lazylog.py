"""Logging for the paths a pipeline program takes, without importing `logging` until needed.

`logging` (with the `traceback` and `string` it imports) is about a tenth of a cached pipeline
program's imports, and such a program usually logs nothing. A debug line is dropped unread
when `logging` was never imported: then no handler or level can have been configured that
would show it (the default shows warnings and worse only).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import logging


def logger(name: str) -> logging.Logger:
    """The logger `name`, importing `logging` now if nothing has yet."""
    import logging

    return logging.getLogger(name)


def debug(name: str, message: str, *args: Any) -> None:
    """`logger(name).debug(...)`, skipped when `logging` was never imported."""
    if "logging" in sys.modules:
        logger(name).debug(message, *args)
