"""Load: 20 concurrent sessions x 50 operations, with and without one session sending the
heaviest query the engine's limits allow, in alternating rounds on one engine.

Each operation is a small query of the kind a pipeline sends (build a container object, ask
for its ID); its latency is measured from send to answer. The heavy session sends, in a
loop, a document of 19,000 aliased fields (about 57,000 tokens: just under the limits). The
figure that matters is the other sessions' p95 with the heavy query as a ratio to their p95
without it (target <= 2x), with the engine's RSS.

    .venv/bin/python bench/load.py
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

SESSIONS = 20
OPERATIONS = 50
ROUNDS = 2
HEAVY_FIELDS = 19_000


def start_engine(state: Path) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    import json

    env = {**os.environ, "DIRK_STATE_DIR": str(state)}
    log = (state.parent / "engine.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dirk", "engine"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            info: dict[str, Any] = json.loads((state / "engine.json").read_text())
            return proc, info
        except (OSError, ValueError):
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("the engine did not start: see " + str(state.parent / "engine.log"))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def new_session(socket: str) -> str:
    transport = httpx.AsyncHTTPTransport(uds=socket)
    async with httpx.AsyncClient(transport=transport, trust_env=False) as http:
        response = await http.post("http://dirk/sessions", json={"workdir": "/tmp"})
        return str(response.raise_for_status().json()["token"])


async def worker(http: httpx.AsyncClient, token: str, n: int, latencies: list[float]) -> int:
    failures = 0
    for i in range(OPERATIONS):
        query = (
            f'{{ container {{ withEnvVariable(name: "S{n}", value: "{i}") '
            '{ withWorkdir(path: "/w") { id } } } }'
        )
        started = time.perf_counter()
        response = await http.post("/query", json={"query": query}, auth=(token, ""))
        latencies.append(time.perf_counter() - started)
        body = response.json()
        failures += bool(body.get("errors")) or response.status_code != 200
    return failures


async def heavy_loop(http: httpx.AsyncClient, token: str, stop: asyncio.Event) -> int:
    query = "{" + " ".join(f"a{i}: version" for i in range(HEAVY_FIELDS)) + "}"
    sent = 0
    while not stop.is_set():
        response = await http.post("/query", json={"query": query}, auth=(token, ""))
        assert not response.json().get("errors"), response.json()["errors"][0]
        sent += 1
    return sent


async def one_round(port: int, socket: str, heavy: bool) -> tuple[list[float], int, int]:
    tokens = [await new_session(socket) for _ in range(SESSIONS + 1)]
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=SESSIONS + 5)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=600, limits=limits
    ) as http:
        stop = asyncio.Event()
        heavy_task = asyncio.create_task(heavy_loop(http, tokens[-1], stop)) if heavy else None
        if heavy:
            await asyncio.sleep(0.2)  # the first heavy document is being parsed
        failures = sum(
            await asyncio.gather(*(worker(http, tokens[n], n, latencies) for n in range(SESSIONS)))
        )
        stop.set()
        sent = await heavy_task if heavy_task else 0
    return latencies, failures, sent


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1]


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="dirk-load-", dir=os.environ.get("TMPDIR", "/var/tmp")))
    proc, info = start_engine(tmp / "s")
    try:
        plain: list[float] = []
        loaded: list[float] = []
        failures = heavies = 0
        baseline_rss = rss_mb(proc.pid)
        peak_rss = baseline_rss
        for _ in range(ROUNDS):  # interleaved: the machine's noise weighs on both alike
            for heavy, bucket in ((False, plain), (True, loaded)):
                got, failed, sent = asyncio.run(one_round(info["port"], info["socket"], heavy))
                what = "with" if heavy else "without"
                print(f"   round {what} the heavy query: p95 {percentile(got, 95) * 1000:.1f} ms")
                bucket.extend(got)
                failures += failed
                heavies += sent
                peak_rss = max(peak_rss, rss_mb(proc.pid))
        p50 = (percentile(plain, 50), percentile(loaded, 50))
        p95 = (percentile(plain, 95), percentile(loaded, 95))
        print(f"   {SESSIONS} sessions x {OPERATIONS} operations, {ROUNDS} rounds each way")
        print(f"   without the heavy query: p50 {p50[0] * 1000:.1f} ms, p95 {p95[0] * 1000:.1f} ms")
        print(
            f"   with it ({heavies} heavy documents of {HEAVY_FIELDS} fields): "
            f"p50 {p50[1] * 1000:.1f} ms, p95 {p95[1] * 1000:.1f} ms"
        )
        print(f"   p95 ratio {p95[1] / p95[0]:.2f}x (target <= 2x), failures {failures}")
        print(
            f"   engine RSS: {baseline_rss:.0f} MB at start, {peak_rss:.0f} MB at peak, "
            f"{rss_mb(proc.pid):.0f} MB at the end"
        )
        return 1 if failures else 0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
