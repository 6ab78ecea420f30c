"""`dirk query`: one GraphQL document against the engine, its `data` printed as JSON.

The session is the one `dirk run` handed down (DAGGER_SESSION_PORT/TOKEN) when set, else one
of its own on the engine a program would use (DIRK_ENGINE or the local one, started if needed),
ended when the answer is in. An error answer prints its message and exits 1.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from dirk.errors import DirkError, QueryError


def parse_variables(pairs: Sequence[str], as_json: str | None) -> dict[str, Any]:
    """`--vars JSON` first, then each `--var NAME=VALUE` (a string) over it."""
    variables: dict[str, Any] = {}
    if as_json is not None:
        try:
            loaded = json.loads(as_json)
        except ValueError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--vars") from None
        if not isinstance(loaded, dict):
            raise click.BadParameter(
                f"must be a JSON object of names to values, not {type(loaded).__name__}",
                param_hint="--vars",
            )
        variables.update(loaded)
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="--var")
        variables[name] = value
    return variables


def read_document(document: str | None) -> str:
    if document is not None and document != "-":
        text = document
    elif sys.stdin.isatty():
        raise click.UsageError(
            "give a GraphQL document as the argument (`dirk query '{ version }'`) or on stdin"
        )
    else:
        text = sys.stdin.read()
    if not text.strip():
        raise click.UsageError("the GraphQL document is empty")
    return text


@click.command()
@click.argument("document", required=False)
@click.option(
    "--var", "pairs", multiple=True, metavar="NAME=VALUE", help="A string variable (repeatable)."
)
@click.option(
    "--vars", "vars_json", metavar="JSON", help="Variables as a JSON object: '{\"n\": 2}'."
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Host directory relative paths resolve against [default: the current directory].",
)
def query(
    document: str | None, pairs: tuple[str, ...], vars_json: str | None, workdir: Path | None
) -> None:
    """Send the GraphQL DOCUMENT (or stdin, or `-`) and print the answer's data as JSON.

    \b
      dirk query '{ version }'
      echo 'query($a: String!) { container { from(address: $a) { envVariables { name } } } }' \\
        | dirk query --var a=127.0.0.1:5000/busybox:latest
    """
    text = read_document(document)
    variables = parse_variables(pairs, vars_json)
    try:
        data = asyncio.run(_ask((workdir or Path.cwd()).absolute(), text, variables))
    except QueryError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    except DirkError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


async def _ask(workdir: Path, text: str, variables: Mapping[str, Any]) -> dict[str, Any]:
    from dirk.sdk.provision import held_session
    from dirk.wire.client import GraphQLClient

    async with held_session(workdir, {"dirk.client": "dirk query"}) as session:
        client = GraphQLClient(session.query_address, session.token)
        try:
            return await client.execute(text, variables)
        finally:
            await client.aclose()
