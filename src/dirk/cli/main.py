"""The `dirk` command: the engine daemon, Dagger's session handshake, `run`, `version`.

Each subcommand imports what it needs only when it runs: `dirk engine` is on the cold-start
path of every first pipeline, and `dirk session` on the start of every official-SDK program.
"""

from __future__ import annotations

import click

from dirk import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dirk")
def main() -> None:
    """dirk: CI/CD pipelines as Python code, run in OCI containers by a caching DAG engine."""


@main.command()
def version() -> None:
    """Print dirk's version."""
    click.echo(f"dirk {__version__}")


def _register() -> None:
    from dirk.cli import engine_cmd, session_cmd

    main.add_command(engine_cmd.engine)
    main.add_command(session_cmd.session)
    main.add_command(session_cmd.run)


_register()
