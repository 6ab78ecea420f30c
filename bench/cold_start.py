"""Cold start: from spawning `python -m dirk engine` on a fresh state dir to the first answer.

What a first pipeline waits for: the engine process starts, publishes engine.json, a session is
opened on its unix socket, and `{ version }` is answered. Median of N runs; target < 0.5 s.

    .venv/bin/python bench/cold_start.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

TARGET_S = 0.5
TIMEOUT_S = 15.0


def one_run() -> tuple[float, float]:
    """(seconds to engine.json, seconds to the first answered query)."""
    with tempfile.TemporaryDirectory(prefix="dirk-cold-") as tmp:
        state = Path(tmp) / "s"
        log = open(Path(tmp) / "engine.log", "wb")  # noqa: SIM115
        env = {**os.environ, "DIRK_STATE_DIR": str(state)}
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "dirk", "engine", "--port", "0"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            info_path = state / "engine.json"
            while not info_path.exists():
                if proc.poll() is not None or time.perf_counter() - started > TIMEOUT_S:
                    raise SystemExit(
                        "the engine did not start:\n" + (Path(tmp) / "engine.log").read_text()
                    )
                time.sleep(0.002)
            published = time.perf_counter() - started
            info = json.loads(info_path.read_text())
            transport = httpx.HTTPTransport(uds=info["socket"])
            with httpx.Client(transport=transport, base_url="http://engine") as local:
                token = local.post("/sessions", json={"workdir": tmp, "labels": {}}).json()["token"]
            with httpx.Client(base_url=f"http://127.0.0.1:{info['port']}") as client:
                answer = client.post("/query", json={"query": "{ version }"}, auth=(token, ""))
            answered = time.perf_counter() - started
            if answer.json().get("data", {}).get("version") is None:
                raise SystemExit(f"unexpected answer: {answer.text}")
            return published, answered
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
            log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    runs = [one_run() for _ in range(args.runs)]
    published = statistics.median(r[0] for r in runs)
    answered = statistics.median(r[1] for r in runs)
    print(f"engine.json published: median {published * 1000:.0f} ms")
    print(
        f"cold start to first answered query: median {answered * 1000:.0f} ms over {args.runs} "
        f"runs (all: {', '.join(f'{r[1] * 1000:.0f}' for r in runs)} ms; target "
        f"{TARGET_S * 1000:.0f} ms) {'OK' if answered < TARGET_S else 'SLOW'}"
    )


if __name__ == "__main__":
    main()
