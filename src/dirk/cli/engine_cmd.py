"""`dirk engine`: the engine daemon in the foreground (the SDK starts it detached)."""

from __future__ import annotations

from pathlib import Path

import click

from dirk.cli.logs import setup_logging
from dirk.errors import DirkError


@click.command()
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="DIRK_STATE_DIR",
    help="Where the engine keeps its cache and state [default: /var/lib/dirk for root].",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    envvar="DIRK_ENGINE_PORT",
    show_default=True,
    help="TCP port on 127.0.0.1 (0: the system picks one; engine.json tells clients).",
)
def engine(state_dir: Path | None, port: int) -> None:
    """Run the engine daemon until SIGTERM or Ctrl-C."""
    setup_logging()
    import asyncio
    import sys

    if "httpx" not in sys.modules:
        # httpx imports its command-line module, and with it rich, click's extras and pygments,
        # whenever they are installed (they are: dirk's CLI and progress use them): a tenth of
        # the engine's start. The engine never runs httpx's CLI; `httpx.main` becomes httpx's
        # own stand-in for a missing CLI, the library is unchanged.
        sys.modules["httpx._main"] = None  # type: ignore[assignment]
    from dirk.engine.daemon import serve

    try:
        asyncio.run(serve(state_dir.absolute() if state_dir else None, port))
    except DirkError as exc:
        raise click.ClickException(str(exc)) from exc
