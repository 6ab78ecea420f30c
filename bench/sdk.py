"""Through the SDK and the engine daemon: a fully cached 20-step pipeline, and one uncached
exec vs the raw runtime on an equivalent bundle (measured in the same run).

Uses its own engine on a temporary state dir (started by `dirk.Connection`, stopped at the end).
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dirk
from dirk.workers.executor.busybox import make_busybox_rootfs
from exec_baseline import RawRuntime

BUSYBOX = "127.0.0.1:5000/busybox:latest"


def pipeline(
    client: dirk.Client[dirk.Sync], salt: str, steps: int = 20
) -> dirk.Container[dirk.Sync]:
    ctr = client.container().from_(BUSYBOX)
    for i in range(steps):
        ctr = ctr.with_exec(["sh", "-c", f"echo {salt}-{i} >> /log"])
    return ctr


def main() -> None:
    runs = 15
    with tempfile.TemporaryDirectory(prefix="dirk-bench-sdk-") as tmp:
        os.environ["DIRK_STATE_DIR"] = str(Path(tmp) / "state")
        rootfs = make_busybox_rootfs(Path(tmp) / "rootfs")
        raw = RawRuntime(rootfs, "crun", "prepared")
        try:
            with dirk.Connection() as client:
                salt = str(time.time_ns())
                started = time.perf_counter()
                pipeline(client, salt).sync()
                cold = time.perf_counter() - started
            # A new connection (a new session, as a new program would open) re-runs it.
            with dirk.Connection() as client:
                started = time.perf_counter()
                pipeline(client, salt).sync()
                cached = time.perf_counter() - started
                base = client.container().from_(BUSYBOX)
                base.sync()
                sdk_times: list[float] = []
                raw_times: list[float] = []
                for i in range(runs + 3):
                    started = time.perf_counter()
                    base.with_env_variable("RUN", f"{salt}-{i}").with_exec(["true"]).sync()
                    elapsed = time.perf_counter() - started
                    raw_elapsed = raw.run_once()
                    if i >= 3:
                        sdk_times.append(elapsed)
                        raw_times.append(raw_elapsed)
        finally:
            raw.close()
            _stop_engine(Path(tmp) / "state")
    sdk_ms = statistics.median(sdk_times) * 1000
    raw_ms = statistics.median(raw_times) * 1000
    rows = {
        "20-step pipeline cold, via SDK (ms)": cold * 1000,
        "20-step pipeline fully cached, new session (ms)": cached * 1000,
        "one uncached exec via SDK (ms)": sdk_ms,
        "raw crun, netns ready (ms)": raw_ms,
        "ratio SDK exec / raw crun": sdk_ms / raw_ms,
    }
    for name, value in rows.items():
        print(f"  {name:48} {value:9.2f}")


def _stop_engine(state: Path) -> None:
    try:
        info = json.loads((state / "engine.json").read_text())
    except OSError:
        return
    os.kill(int(info["pid"]), signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (state / "engine.json").exists():
        time.sleep(0.05)


if __name__ == "__main__":
    main()
