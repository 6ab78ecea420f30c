"""The cost of showing progress: a cached 200-step pipeline through the SDK with the step
stream on (plain view, `Config(log_output=...)`) against the same pipeline with it off.

The pipeline is 10 chains of 20 execs on one image; each step's output is read (200 leaf
queries, each answered from the engine's cache and reported as a `cached` step event), in a
new session per run as a new program would open. Rounds alternate which of the two goes
first; the figures are medians. Uses its own engine on a temporary state dir (started by
`dirk.Connection`, stopped at the end). Target: <= 1.1x.
"""

from __future__ import annotations

import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dirk
from sdk import BUSYBOX, _stop_engine

STEPS = 200
CHAIN = 20
ROUNDS = 7


def run(salt: str, log: io.StringIO | None) -> float:
    """Seconds to read every step's output in a new session."""
    started = time.perf_counter()
    with dirk.Connection(dirk.Config(log_output=log)) as client:
        base = client.container().from_(BUSYBOX)
        for chain in range(STEPS // CHAIN):  # chains: a query nests one level per call
            ctr = base
            for i in range(CHAIN):
                ctr = ctr.with_exec(["sh", "-c", f"echo {salt}-{chain}-{i}"])
                ctr.stdout()
    return time.perf_counter() - started


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="dirk-bench-progress-") as tmp:
        os.environ["DIRK_STATE_DIR"] = str(Path(tmp) / "state")
        os.environ.pop("DIRK_PROGRESS", None)
        salt = str(time.time_ns())
        off: list[float] = []
        on: list[float] = []
        lines = 0
        try:
            run(salt, None)  # runs the steps once: every later run is cached
            for index in range(ROUNDS):
                order = ("off", "on") if index % 2 == 0 else ("on", "off")
                for mode in order:
                    if mode == "off":
                        off.append(run(salt, None))
                    else:
                        log = io.StringIO()
                        on.append(run(salt, log))
                        lines = len(log.getvalue().splitlines())
        finally:
            _stop_engine(Path(tmp) / "state")
    off_ms = statistics.median(off) * 1000
    on_ms = statistics.median(on) * 1000
    rows = {
        f"{STEPS}-step cached pipeline, progress off (ms)": off_ms,
        f"{STEPS}-step cached pipeline, plain progress (ms)": on_ms,
        "lines the plain view wrote per run": float(lines),
        "ratio progress on / off (target <= 1.1)": on_ms / off_ms,
    }
    for name, value in rows.items():
        print(f"  {name:48} {value:9.2f}")


if __name__ == "__main__":
    main()
