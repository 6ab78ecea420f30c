"""The garbage collector on a cache of 10,000 entries: how long a full prune takes, and what
it costs the engine's other sessions meanwhile (the latency of `{ version }` asked over and
over by another session, while the prune runs vs while the engine is idle, same round).

Each round writes 10,000 cache rows into the running engine's state, as its steps would
have: a layer directory each (one 4 KiB file), in chains of 100 sharing a base layer, then
prunes everything through `engine { localCache { prune } }`. The baseline is deleting the
same tree of 10,000 directories with `shutil.rmtree`, made and deleted in the same round: a
prune cannot take less than removing its files. Rounds measure idle latency, then latency
during the prune; the figures are medians over rounds. Uses its own engine on a temporary
state dir, with background collection off.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sdk import _stop_engine

ENTRIES = 10_000
CHAIN = 100
ROUNDS = 3
#: Seconds of idle latency sampling per round.
IDLE_S = 1.5


def make_layers(root: Path, salt: str) -> list[str]:
    """ENTRIES layer directories of one 4 KiB file each, under `root`."""
    made = []
    for i in range(ENTRIES):
        layer = f"{salt}{i:06x}"
        path = root / layer
        path.mkdir()
        (path / "f").write_bytes(b"x" * 4096)
        made.append(layer)
    return made


def rmtree_baseline(tmp: Path, salt: str) -> float:
    """Seconds `shutil.rmtree` takes on a tree like the one a prune removes."""
    root = tmp / f"twin-{salt}"
    root.mkdir()
    make_layers(root, salt)
    started = time.perf_counter()
    shutil.rmtree(root)
    return time.perf_counter() - started


def synthesize(state: Path, salt: str) -> None:
    """Write ENTRIES cache rows and their layers, as an engine would have left them."""
    now = time.time()
    layer_rows = []
    cache_rows = []
    base = ""
    for i, layer in enumerate(make_layers(state / "l", salt)):
        layer_rows.append((layer, None, 0, now))
        if i % CHAIN == 0:
            base = layer
        outputs = [[base, layer]] if base != layer else [[layer]]
        result = json.dumps({"outputs": outputs})
        key = f"sha256:{salt}{i:058x}"
        cache_rows.append((key, result, now - ENTRIES + i, now - ENTRIES + i, "Exec", f"s {i}"))
    db = sqlite3.connect(state / "dirk.db", timeout=30, isolation_level=None)
    try:
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO layers(id, source, size, created) VALUES (?, ?, ?, ?)", layer_rows
        )
        db.executemany(
            "INSERT INTO cache(key, result, created, last_used, kind, description) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            cache_rows,
        )
        db.execute("COMMIT")
    finally:
        db.close()


async def sample(client: object, stop: asyncio.Event, until: float | None) -> list[float]:
    from dirk.wire.client import GraphQLClient

    assert isinstance(client, GraphQLClient)
    seen: list[float] = []
    while not stop.is_set() and (until is None or time.monotonic() < until):
        started = time.perf_counter()
        await client.execute("{ version }")
        seen.append(time.perf_counter() - started)
    return seen


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) >= 20 else max(values)


async def bench(state: Path) -> dict[str, float]:
    from dirk.sdk.provision import held_session
    from dirk.wire.client import GraphQLClient

    prune_s: list[float] = []
    rmtree_s: list[float] = []
    idle_p50: list[float] = []
    idle_p95: list[float] = []
    busy_p50: list[float] = []
    busy_p95: list[float] = []
    async with (
        held_session(Path.cwd(), {"dirk.client": "bench gc"}) as pruner,
        held_session(Path.cwd(), {"dirk.client": "bench gc probe"}) as prober,
    ):
        prune_client = GraphQLClient(pruner.query_address, pruner.token)
        probe = GraphQLClient(prober.query_address, prober.token)
        try:
            await probe.execute("{ version }")
            for index in range(ROUNDS):
                salt = f"{index:02x}"
                rmtree_s.append(await asyncio.to_thread(rmtree_baseline, state.parent, salt))
                await asyncio.to_thread(synthesize, state, salt)
                count = await prune_client.execute(
                    "{ engine { localCache { entrySet { entryCount } } } }"
                )
                assert count["engine"]["localCache"]["entrySet"]["entryCount"] >= ENTRIES
                idle = await sample(probe, asyncio.Event(), time.monotonic() + IDLE_S)
                stop = asyncio.Event()
                sampler = asyncio.create_task(sample(probe, stop, None))
                started = time.perf_counter()
                await prune_client.execute("{ engine { localCache { prune } } }")
                prune_s.append(time.perf_counter() - started)
                stop.set()
                busy = await sampler
                left = await prune_client.execute(
                    "{ engine { localCache { entrySet { entryCount } } } }"
                )
                assert left["engine"]["localCache"]["entrySet"]["entryCount"] == 0, left
                assert not list((state / "l").iterdir())
                idle_p50.append(statistics.median(idle))
                idle_p95.append(p95(idle))
                busy_p50.append(statistics.median(busy))
                busy_p95.append(p95(busy))
        finally:
            await prune_client.aclose()
            await probe.aclose()
    med = statistics.median
    return {
        f"prune of {ENTRIES} entries (s)": med(prune_s),
        f"baseline: rmtree of the same {ENTRIES} layers (s)": med(rmtree_s),
        "ratio prune / rmtree": med(prune_s) / med(rmtree_s),
        "entries pruned per second": ENTRIES / med(prune_s),
        "{ version } p50 while idle (ms)": med(idle_p50) * 1000,
        "{ version } p95 while idle (ms)": med(idle_p95) * 1000,
        "{ version } p50 during the prune (ms)": med(busy_p50) * 1000,
        "{ version } p95 during the prune (ms)": med(busy_p95) * 1000,
        "ratio p95 during / idle": med(busy_p95) / med(idle_p95),
    }


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="dirk-bench-gc-", dir="/var/tmp") as tmp:
        state = Path(tmp) / "state"
        os.environ["DIRK_STATE_DIR"] = str(state)
        os.environ["DIRK_GC_INTERVAL"] = "0"
        try:
            rows = asyncio.run(bench(state))
        finally:
            _stop_engine(state)
    for name, value in rows.items():
        print(f"  {name:48} {value:9.2f}")


if __name__ == "__main__":
    main()
