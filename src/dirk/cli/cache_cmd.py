"""`dirk cache ls|du|prune`: what the engine's cache holds, and freeing space.

Each talks to the engine a program would use (as `dirk query` does) through Dagger's
`engine { localCache { ... } }` API, so what it shows is what the garbage collector sees.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from dirk.errors import DirkError

_ENTRY_FIELDS = (
    "key description recordType dagqlCall diskSpaceBytes activelyUsed "
    "createdTimeUnixNano mostRecentUseTimeUnixNano"
)
_LIST = (
    "query($key: String!) { engine { localCache { entrySet(key: $key) { entryCount "
    "diskSpaceBytes entries { " + _ENTRY_FIELDS + " } } } } }"
)
_TOTALS = (
    "{ engine { localCache { maxUsedSpace minFreeSpace reservedSpace targetSpace "
    "entrySet { entryCount diskSpaceBytes entries { recordType diskSpaceBytes activelyUsed } } "
    "} } }"
)
_PRUNE = (
    "query($policy: Boolean!, $max: String!, $target: String!, $keep: String!, $key: String!) "
    "{ engine { localCache { prune(useDefaultPolicy: $policy, maxUsedSpace: $max, "
    "targetSpace: $target, keepDuration: $keep, key: $key) } } }"
)


async def _ask(text: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
    from dirk.sdk.provision import held_session
    from dirk.wire.client import GraphQLClient

    async with held_session(Path.cwd(), {"dirk.client": "dirk cache"}) as session:
        client = GraphQLClient(session.query_address, session.token)
        try:
            return await client.execute(text, dict(variables or {}))
        finally:
            await client.aclose()


def _run(text: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
    try:
        return asyncio.run(_ask(text, variables))
    except DirkError as exc:
        raise click.ClickException(str(exc)) from exc


def _cache(data: Mapping[str, Any]) -> dict[str, Any]:
    cache: dict[str, Any] = data["engine"]["localCache"]
    return cache


@click.group()
def cache() -> None:
    """Show what the engine's cache holds and free space.

    A garbage collector also runs in the engine: by default the cache takes at most 75% of
    its disk and leaves 20% of it free (DIRK_GC_MAX_USED_SPACE, DIRK_GC_MIN_FREE_SPACE,
    DIRK_GC_RESERVED_SPACE, DIRK_GC_KEEP_DURATION, DIRK_GC_INTERVAL in the engine's
    environment). Nothing a live session uses is ever removed."""


@cache.command("ls")
@click.option(
    "--sort",
    type=click.Choice(["size", "used"]),
    default="size",
    show_default=True,
    help="Largest first, or least recently used first.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=40,
    show_default=True,
    help="Show this many entries (0: all).",
)
@click.option("--key", default="", help="Show only the entry with this key.")
@click.option("--json", "as_json", is_flag=True, help="Print the entries as JSON.")
def ls(sort: str, limit: int, key: str, as_json: bool) -> None:
    """List the cache's entries: size, last use, type, and what made them."""
    found = _cache(_run(_LIST, {"key": key}))["entrySet"]
    entries: list[dict[str, Any]] = found["entries"]
    if sort == "used":
        entries.sort(key=lambda e: e["mostRecentUseTimeUnixNano"])
    if as_json:
        click.echo(json.dumps(entries, indent=2))
        return
    if not entries:
        click.echo(f"no cache entry has key {key!r}" if key else "the cache is empty")
        return
    shown = entries[:limit] if limit else entries
    now = time.time()
    click.echo(f"{'SIZE':>9}  {'LAST USED':>9}  {'TYPE':<19} {'':<6} DESCRIPTION")
    for entry in shown:
        used = now - entry["mostRecentUseTimeUnixNano"] / 1e9
        click.echo(
            f"{_size(entry['diskSpaceBytes']):>9}  {_ago(used):>9}  "
            f"{entry['recordType']:<19} {'in use' if entry['activelyUsed'] else '':<6} "
            f"{_describe(entry)}"
        )
    rest = len(entries) - len(shown)
    more = f" ({rest} more: --limit 0 shows all)" if rest > 0 else ""
    click.echo(f"{found['entryCount']} entries, {_size(found['diskSpaceBytes'])}{more}")


@cache.command()
def du() -> None:
    """Show how much the cache takes, by kind of entry, and its policy."""
    cache_state = _cache(_run(_TOTALS))
    entries = cache_state["entrySet"]["entries"]
    by_type: dict[str, list[int]] = {}
    in_use = 0
    for entry in entries:
        count_size = by_type.setdefault(entry["recordType"], [0, 0])
        count_size[0] += 1
        count_size[1] += entry["diskSpaceBytes"]
        in_use += entry["diskSpaceBytes"] if entry["activelyUsed"] else 0
    for record_type, (count, size) in sorted(by_type.items(), key=lambda i: -i[1][1]):
        click.echo(f"{_size(size):>9}  {record_type} ({count})")
    total = cache_state["entrySet"]["diskSpaceBytes"]
    click.echo(f"{_size(total):>9}  total, {cache_state['entrySet']['entryCount']} entries")
    click.echo(f"{_size(in_use):>9}  used by live sessions (never collected)")
    limits = (
        ("max used space", cache_state["maxUsedSpace"]),
        ("min free space", cache_state["minFreeSpace"]),
        ("reserved space", cache_state["reservedSpace"]),
        ("target space", cache_state["targetSpace"]),
    )
    click.echo("policy: " + ", ".join(f"{n} {_size(v) if v else 'none'}" for n, v in limits))


@cache.command()
@click.option(
    "--keep-duration",
    default="",
    metavar="DURATION",
    help="Remove entries unused for longer than this (90s, 30m, 48h, 7d).",
)
@click.option(
    "--max-size",
    default="",
    metavar="SIZE",
    help="Remove least recently used entries until the cache takes at most this "
    "(500MB, 20GB, 10%).",
)
@click.option(
    "--key",
    "keys",
    multiple=True,
    metavar="KEY",
    help="Remove only the entry with this key (repeatable; `dirk cache ls` shows them, a "
    "cache volume's is volume:NAME).",
)
@click.option(
    "--policy", is_flag=True, help="Collect as the engine's own policy says (with the above)."
)
def prune(keep_duration: str, max_size: str, keys: tuple[str, ...], policy: bool) -> None:
    """Free space: remove every entry no live session uses, or those the options select."""
    _check_options(max_size, keep_duration)
    before = _cache(_run(_TOTALS))["entrySet"]
    base = {"policy": policy, "max": max_size, "target": max_size, "keep": keep_duration}
    for key in keys or ("",):
        _run(_PRUNE, {**base, "key": key})
    after = _cache(_run(_TOTALS))["entrySet"]
    freed = max(0, before["diskSpaceBytes"] - after["diskSpaceBytes"])
    removed = max(0, before["entryCount"] - after["entryCount"])
    click.echo(
        f"freed {_size(freed)} ({removed} entries); the cache now takes "
        f"{_size(after['diskSpaceBytes'])} in {after['entryCount']} entries"
    )


def _check_options(max_size: str, keep_duration: str) -> None:
    """Malformed values are refused here, named as the user wrote them (the engine would name
    its own arguments)."""
    from dirk.errors import CachePolicyError
    from dirk.solver.gc_policy import parse_duration, parse_space

    try:
        if max_size.strip():
            parse_space(max_size, 0, "--max-size")
        if keep_duration.strip():
            parse_duration(keep_duration, "--keep-duration")
    except CachePolicyError as exc:
        raise click.UsageError(str(exc)) from None


def _describe(entry: Mapping[str, Any]) -> str:
    description = entry["description"] or entry["dagqlCall"]
    key = str(entry["key"])
    short = key if key.startswith(("volume:", "layer:")) else key[:19]
    return f"{description}  [{short}]"


def _size(size: float) -> str:
    from dirk.solver.gc_policy import human_size

    return human_size(size)


def _ago(seconds: float) -> str:
    from dirk.solver.gc_policy import human_duration

    return human_duration(max(0.0, seconds)) + " ago"
