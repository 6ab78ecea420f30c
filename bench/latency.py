"""Latency to the floor: whole processes against the interpreter's own start, and one uncached
exec against a raw crun whole step, each as a ratio to its baseline measured in the same rounds
(interleaved, medians).

1. a fully cached 20-step pipeline program (`python ci.py`)       vs `python -c pass`
2. `dirk run -- true`                                              vs `python -c pass`
3. engine cold start (spawn to the first answered query)           vs `python -c pass`
4. one uncached `exec true` through the SDK (connection open)      vs a raw crun whole step on
   overlayfs (mkdir, mount, config.json, `crun run`, umount, rm), with the engine's breakdown
   of the exec (`DIRK_TIMING=1` marks on the system's monotonic clock, beside the client's)

Targets: 1 <= 6x, 2 <= 5x, 3 <= 20x, 4 <= 1.3x. dirk's sources are byte-compiled first (as an
installed package is), so no round pays for compiling them. Rows 1-2 also give the CPU time the
process used (user + system, from its rusage) against the floor's: on a loaded machine that
ratio moves less than wall time does. `--src DIR` runs the programs and the engine of rows 1-3
from another copy of dirk's sources (e.g. an older commit's `src`, to compare before/after).

    .venv/bin/python bench/latency.py [--rounds 15] [--src DIR]
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dirk
from dirk.wire import http
from dirk.wire.driver import drive
from exec_baseline import RawRuntime

BUSYBOX = "127.0.0.1:5000/busybox:latest"
PY = sys.executable
TARGETS = {"cached": 6.0, "run": 5.0, "cold": 20.0, "exec": 1.3}

CI_PROGRAM = f"""\
import sys
import dirk

with dirk.Connection() as client:
    ctr = client.container().from_({BUSYBOX!r})
    for i in range(20):
        ctr = ctr.with_exec(["sh", "-c", f"echo {{sys.argv[1]}}-{{i}} >> /log"])
    ctr.sync()
"""


#: CPU seconds (user + system) of each process `timed` ran, by argv[1] (the program).
CPU: dict[str, list[float]] = {}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    cpu = _children_cpu()
    started = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdin=subprocess.DEVNULL, capture_output=True)
    elapsed = time.perf_counter() - started
    name = Path(argv[1]).name if argv[1].endswith(".py") else " ".join(argv[1:3])
    CPU.setdefault(name, []).append(_children_cpu() - cpu)
    return elapsed


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def spread(values: list[float]) -> str:
    ordered = sorted(values)
    q1, q3 = ordered[len(ordered) // 4], ordered[(3 * len(ordered)) // 4]
    return f"IQR {q1 * 1000:.0f}-{q3 * 1000:.0f}"


class Engine:
    """A `dirk engine` of our own on a temporary state dir, with timing marks on."""

    def __init__(self, state: Path, env: dict[str, str] | None = None) -> None:
        self.state = state
        self.env = {**(env or os.environ), "DIRK_STATE_DIR": str(state)}
        self.log = open(state.parent / "engine.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [PY, "-m", "dirk", "engine"],
            env={**self.env, "DIRK_TIMING": "1"},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while not (state / "engine.json").exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the engine did not start; see " + str(state.parent))
            time.sleep(0.01)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)
        self.log.close()


def cold_start_once(tmp: Path, base_env: dict[str, str]) -> float:
    """Seconds from spawning an engine on a fresh state dir to its first answered query."""
    state = tmp / f"cold-{time.time_ns()}"
    env = {**base_env, "DIRK_STATE_DIR": str(state)}
    started = time.perf_counter()
    proc = subprocess.Popen(
        [PY, "-m", "dirk", "engine", "--port", "0"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        info_path = state / "engine.json"
        while not info_path.exists():
            if proc.poll() is not None or time.perf_counter() - started > 30:
                raise SystemExit("the engine did not start")
            time.sleep(0.001)
        info = json.loads(info_path.read_text())
        control = http.Pool(
            "http://engine",
            uds=info["socket"],
            blocking=True,
            connect_timeout=10,
            read_timeout=30,
        )
        body = {"workdir": str(tmp), "labels": {}, "env": {}}
        token = drive(control.request("POST", "/sessions", json_body=body)).json()["token"]
        query = http.Pool(
            f"http://127.0.0.1:{info['port']}",
            blocking=True,
            connect_timeout=10,
            read_timeout=30,
            headers={"Authorization": http.basic_auth(token)},
        )
        answer = drive(query.request("POST", "/query", json_body={"query": "{ version }"}))
        elapsed = time.perf_counter() - started
        if answer.json().get("data", {}).get("version") is None:
            raise SystemExit(f"unexpected answer: {answer.text}")
        return elapsed
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        shutil.rmtree(state, ignore_errors=True)


class OverlayStep:
    """The raw baseline of one exec step: what dirk's executor does, by hand, with nothing
    else: mkdir, mount an overlay over the rootfs, write config.json, `crun run true`, umount,
    remove. The network namespace is made once beforehand (dirk's pool has one ready too)."""

    def __init__(self, rootfs: Path) -> None:
        from dirk.workers.snapshots.overlay import mount_overlay, unmount

        self._mount, self._unmount = mount_overlay, unmount
        self.lower = rootfs
        self.raw = RawRuntime(rootfs, "crun", "prepared")
        self.base = self.raw.dir / "steps"
        self.base.mkdir()
        self.config = json.loads((self.raw.dir / "config.json").read_text())
        self._count = 0

    def run_once(self) -> float:
        started = time.perf_counter()
        self._count += 1
        step = self.base / str(self._count)
        upper, work, merged = step / "u", step / "w", step / "m"
        for d in (upper, work, merged):
            d.mkdir(parents=True)
        self._mount(merged, f"lowerdir={self.lower},upperdir={upper},workdir={work}")
        try:
            config = {**self.config, "root": {"path": str(merged), "readonly": False}}
            (step / "config.json").write_text(json.dumps(config))
            subprocess.run(
                [
                    self.raw.runtime,
                    "--root",
                    str(self.raw.state),
                    "run",
                    "--bundle",
                    str(step),
                    f"raw{self._count}",
                ],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                check=True,
            )
        finally:
            self._unmount(merged)
            shutil.rmtree(step)
        return time.perf_counter() - started

    def close(self) -> None:
        self.raw.close()


def exec_breakdown(client: dirk.Client[dirk.Sync], salt: str, i: int) -> list[tuple[str, float]]:
    """One uncached `exec true`; the client's and the engine's marks, in order."""
    base = client.container().from_(BUSYBOX)
    ctr = base.with_env_variable("RUN", f"{salt}-{i}").with_exec(["true"])
    transport: Any = client._runner.executor.transport
    transport.last_extensions = None
    started = time.monotonic()
    ctr.sync()
    ended = time.monotonic()
    marks = [("sdk.call", started)]
    ext = transport.last_extensions or {}
    marks += [(str(name), float(at)) for name, at in ext.get("timing", [])]
    marks.append(("sdk.returned", ended))
    return marks


def interleave(rounds: int, runners: dict[str, Callable[[], float]]) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            times[name].append(runners[name]())
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--src", type=Path, help="dirk's sources for the programs and engines")
    args = parser.parse_args()
    package = Path(dirk.__file__).parent
    compileall.compile_dir(str(package), quiet=1)
    base_env = dict(os.environ)
    if args.src is not None:
        compileall.compile_dir(str(args.src / "dirk"), quiet=1)
        base_env["PYTHONPATH"] = str(args.src.resolve())
    tmp = Path(tempfile.mkdtemp(prefix="dirk-bench-lat-", dir="/var/tmp"))
    (tmp / "state").mkdir()
    engine = Engine(tmp / "state" / "s", base_env)
    step: OverlayStep | None = None
    try:
        ci = tmp / "ci.py"
        ci.write_text(CI_PROGRAM)
        salt = str(time.time_ns())
        env = engine.env
        timed([PY, str(ci), salt], env)  # fills the cache
        timed([PY, str(ci), salt], env)  # warm
        timed([PY, "-m", "dirk", "run", "--", "true"], env)
        procs = interleave(
            args.rounds,
            {
                "floor": lambda: timed([PY, "-c", "pass"], env),
                "cached": lambda: timed([PY, str(ci), salt], env),
                "run": lambda: timed([PY, "-m", "dirk", "run", "--", "true"], env),
            },
        )
        cold = interleave(
            max(5, args.rounds // 3),
            {
                "floor": lambda: timed([PY, "-c", "pass"], env),
                "cold": lambda: cold_start_once(tmp, base_env),
            },
        )
        from dirk.workers.executor.busybox import make_busybox_rootfs

        step = OverlayStep(make_busybox_rootfs(tmp / "rootfs"))
        os.environ["DIRK_STATE_DIR"] = str(engine.state)
        sdk: list[float] = []
        raw: list[float] = []
        breakdowns: list[list[tuple[str, float]]] = []
        with dirk.Connection() as client:
            client.container().from_(BUSYBOX).sync()
            for i in range(args.rounds + 3):
                marks = exec_breakdown(client, salt, i)
                raw_s = step.run_once()
                if i >= 3:
                    sdk.append(marks[-1][1] - marks[0][1])
                    raw.append(raw_s)
                    breakdowns.append(marks)
    finally:
        if step is not None:
            step.close()
        engine.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    report(procs, cold, sdk, raw, breakdowns)


def report(
    procs: dict[str, list[float]],
    cold: dict[str, list[float]],
    sdk: list[float],
    raw: list[float],
    breakdowns: list[list[tuple[str, float]]],
) -> None:
    floor = median_ms(procs["floor"])
    print(f"  floor `python -c pass`: median {floor:.1f} ms ({spread(procs['floor'])})")
    rows = [
        ("cached", "fully cached 20-step pipeline program", procs["cached"], floor),
        ("run", "`dirk run -- true`", procs["run"], floor),
        ("cold", "engine cold start to first answer", cold["cold"], median_ms(cold["floor"])),
        ("exec", "one uncached exec via the SDK vs raw crun step", sdk, median_ms(raw)),
    ]
    for key, title, values, base in rows:
        ms = median_ms(values)
        ratio = ms / base
        verdict = "OK" if ratio <= TARGETS[key] else "over"
        print(
            f"  {title:48} {ms:8.1f} ms  {ratio:5.2f}x (target <= {TARGETS[key]}x, {verdict}; "
            f"{spread(values)})"
        )
    floor_cpu = median_ms(CPU["-c pass"])
    for title, key in (("cached program", "ci.py"), ("dirk run -- true", "-m dirk")):
        cpu = median_ms(CPU[key])
        print(
            f"  CPU time of {title}: {cpu:.0f} ms, floor {floor_cpu:.0f} ms: {cpu / floor_cpu:.2f}x"
        )
    print(f"  raw crun whole step on overlayfs: median {median_ms(raw):.1f} ms")
    print("  uncached exec, where the time goes (median ms between marks):")
    shape = [name for name, _ in breakdowns[0]]
    same = [b for b in breakdowns if [name for name, _ in b] == shape]
    for index in range(1, len(shape)):
        gaps = [b[index][1] - b[index - 1][1] for b in same]
        print(f"    {shape[index - 1]:>22} -> {shape[index]:<22} {median_ms(gaps):7.2f}")


if __name__ == "__main__":
    main()
