"""Logging for the CLI's long-running commands: stderr, level from DIRK_LOG_LEVEL."""

from __future__ import annotations

import logging
import os
import sys


def setup_logging(default: str = "INFO") -> None:
    level = os.environ.get("DIRK_LOG_LEVEL", default).upper()
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
