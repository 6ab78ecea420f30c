"""The `dirk` command: a group whose subcommands are imported only when they run.

`dirk run -- CMD` and `dirk session` are on the start of every program that uses an official
Dagger SDK, and `dirk engine` on the cold start of the first pipeline: none of them may pay for
the others' imports. A subcommand lives in its own module; add it to `COMMANDS`.
"""

from __future__ import annotations

import importlib

import click

from dirk import __version__

#: name -> (module, attribute, one-line help shown by `dirk --help` without importing it).
COMMANDS: dict[str, tuple[str, str, str]] = {
    "engine": ("dirk.cli.engine_cmd", "engine", "Run the engine, or start, stop, inspect it."),
    "session": ("dirk.cli.session_cmd", "session", "Open a session for an official Dagger SDK."),
    "run": ("dirk.cli.session_cmd", "run", "Run a command with a session; exit with its code."),
    "query": ("dirk.cli.query_cmd", "query", "Send a GraphQL query; print the JSON answer."),
    "cache": (
        "dirk.cli.cache_cmd",
        "cache",
        "Show the engine's cache; free space (ls, du, prune).",
    ),
    "version": ("dirk.cli.version_cmd", "version", "Print the client's and engine's versions."),
}

EPILOG = """\b
Shell completion (bash, zsh, fish), e.g. in ~/.bashrc:
  eval "$(_DIRK_COMPLETE=bash_source dirk)"
(zsh: _DIRK_COMPLETE=zsh_source, fish: _DIRK_COMPLETE=fish_source)"""


class LazyGroup(click.Group):
    """A group that imports a subcommand's module when the subcommand is looked up."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module, attribute, _ = entry
        command = getattr(importlib.import_module(module), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{module}.{attribute} is not a click command")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Lists the subcommands from `COMMANDS` (no import), then any added directly."""
        rows = [(name, COMMANDS[name][2]) for name in sorted(COMMANDS)]
        rows += [
            (name, cmd.get_short_help_str())
            for name, cmd in sorted(self.commands.items())
            if name not in COMMANDS
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=EPILOG,
)
@click.version_option(__version__, prog_name="dirk")
def main() -> None:
    """dirk: CI/CD pipelines as Python code, run in OCI containers by a caching DAG engine."""
