"""`dirk version`: this client's version and the engine's, and what to do when they differ.

The engine is the one a program would use (a `dirk run` session, DIRK_ENGINE, or the local
engine of the state directory); it is asked, never started. Exit status: 0 when the versions
agree or no engine runs, 1 when they differ or the engine named cannot be reached.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

import attrs
import click

from dirk.errors import DirkError
from dirk.versions import client_version, mismatch_advice


@attrs.frozen
class EngineVersion:
    """What the engine said: its version ("" when none answered) and where it is."""

    version: str
    where: str
    running: bool
    problem: str = ""


async def engine_version() -> EngineVersion:
    from dirk.sdk.provision import JoinSession, LocalEngine, plan, read_engine_json, running_engine
    from dirk.wire.client import EngineAddress, GraphQLClient, health

    chosen = plan(None, os.environ)
    try:
        if isinstance(chosen, JoinSession):
            where = f"the session of DAGGER_SESSION_PORT={chosen.port}"
            client = GraphQLClient(EngineAddress(f"http://127.0.0.1:{chosen.port}"), chosen.token)
            try:
                data = await client.execute("{ version }")
            finally:
                await client.aclose()
            return EngineVersion(str(data.get("version", "")), where, True)
        if isinstance(chosen, LocalEngine):
            where = str(chosen.state_dir)
            address = await running_engine(chosen.state_dir)
            if address is None:
                return EngineVersion("", where, False)
            info = read_engine_json(chosen.state_dir) or {}
            where = f"pid {info.get('pid', '?')}, {chosen.state_dir}"
            return EngineVersion(await health(address), where, True)
        where = str(chosen.address)
        return EngineVersion(await health(chosen.address), where, True)
    except DirkError as exc:
        return EngineVersion("", where, False, problem=str(exc))


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print {client, engine} as JSON.")
def version(as_json: bool) -> None:
    """Print dirk's version and the engine's; exit 1 when they differ.

    The engine is the one a program here would use (DAGGER_SESSION_*, DIRK_ENGINE or the local
    one); it is never started by this command.
    """
    try:
        engine = asyncio.run(engine_version())
    except DirkError as exc:  # a bad DIRK_ENGINE or DAGGER_SESSION_* value
        raise click.ClickException(str(exc)) from exc
    client = client_version()
    advice = mismatch_advice(client, engine.version, engine.where) if engine.version else None
    if as_json:
        click.echo(
            json.dumps(
                {
                    "client": client,
                    "engine": engine.version or None,
                    "engine_where": engine.where,
                    "match": advice is None and bool(engine.version),
                }
            )
        )
    else:
        click.echo(f"dirk {client} (client: {sys.executable})")
        if engine.version:
            click.echo(f"engine {engine.version} ({engine.where})")
        elif engine.problem:
            click.echo(f"engine: cannot be reached: {engine.problem}")
        else:
            click.echo(
                f"engine: not running ({engine.where}); the next program starts it, "
                "or `dirk engine start`"
            )
    if advice is not None:
        click.echo(f"Error: version mismatch: {advice}", err=True)
        sys.exit(1)
    if engine.problem:
        sys.exit(1)
