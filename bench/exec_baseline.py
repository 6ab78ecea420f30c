"""Baseline for exec benchmarks: the raw OCI runtime on a bundle equivalent to the executor's.

`RawRuntime(rootfs)` writes one bundle (same config as `Executor.run` would, from
`build_config`) and times `<runtime> run` on it with the output piped, nothing else. Network:
"prepared" reuses one namespace made beforehand (setup excluded), "ip" makes and removes a
namespace with veth per run with `ip` (setup included), "none" lets the runtime make an empty one.

Run directly to compare with `Executor.run` (interleaved, so machine load hits both alike):
    .venv/bin/python bench/exec_baseline.py [--runtime crun|runc] [--runs 20]
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Literal

import anyio

from dirk.state.layout import StateLayout
from dirk.workers.executor import network
from dirk.workers.executor.busybox import make_busybox_rootfs
from dirk.workers.executor.executor import Executor
from dirk.workers.executor.hostfiles import hosts_file, read_host_resolv_conf
from dirk.workers.executor.spec import ContainerSpec, HostFiles, ResolvedUser, build_config

NetMode = Literal["prepared", "ip", "none"]


class RawRuntime:
    """One bundle on `rootfs` and a way to time `<runtime> run` on it."""

    def __init__(
        self,
        rootfs: Path,
        runtime: str = "crun",
        net: NetMode = "prepared",
        args: tuple[str, ...] = ("true",),
    ) -> None:
        self.runtime = shutil.which(runtime) or runtime
        self.net = net
        self.dir = Path(tempfile.mkdtemp(prefix="dirk-raw-"))
        self.state = self.dir / "state"
        self.rootfs = rootfs
        self.args = args
        self._tag = secrets.token_hex(2)
        self._count = 0
        self._names = (f"dirk-raw{self._tag}", f"dkraw{self._tag}")
        self._ns: network.Netns | None = None
        network.setup_host_network()
        if net == "prepared":
            self._ns = network.create_netns(*self._names)
        self.files = HostFiles(
            resolv_conf=self.dir / "resolv.conf",
            hostname=self.dir / "hostname",
            hosts=self.dir / "hosts",
        )
        self.files.resolv_conf.write_text(read_host_resolv_conf())
        self.files.hostname.write_text("dirk\n")
        self.files.hosts.write_text(hosts_file("dirk", None))
        self._write_config()

    def _write_config(self) -> None:
        netns = str(network.NETNS_DIR / self._names[0]) if self.net != "none" else None
        config = build_config(
            ContainerSpec(args=self.args),
            self.rootfs,
            ResolvedUser(),
            self.files,
            netns=netns,
            nofile=20000,
            cgroups_path=f"/dirk/raw-{self._tag}",
        )
        (self.dir / "config.json").write_text(json.dumps(config))

    def run_once(self) -> float:
        """Seconds for one `run` (plus namespace setup and removal in "ip" mode)."""
        start = time.perf_counter()
        if self.net == "ip":
            # The kernel frees a removed namespace's veth lazily: a name is never reused.
            self._count += 1
            tag = f"{self._tag}{self._count:x}"
            self._names = (f"dirk-raw{tag}", f"dkraw{tag}")
            network.create_netns(*self._names)
            self._write_config()
        subprocess.run(
            [self.runtime, "--root", str(self.state), "run", "--bundle", str(self.dir), "raw"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=True,
        )
        if self.net == "ip":
            subprocess.run(["ip", "netns", "del", self._names[0]], check=True)
        return time.perf_counter() - start

    def close(self) -> None:
        if self._ns is not None:
            network.remove_netns(self._ns.name)
        shutil.rmtree(self.dir, ignore_errors=True)


def time_raw_runtime(
    rootfs: Path, runs: int = 20, runtime: str = "crun", net: NetMode = "prepared"
) -> list[float]:
    """Durations of `runs` raw `<runtime> run true` on `rootfs` (for the lead's bench)."""
    raw = RawRuntime(rootfs, runtime, net)
    try:
        raw.run_once()  # warm-up
        return [raw.run_once() for _ in range(runs)]
    finally:
        raw.close()


async def _compare(runtime: str, runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="dirk-bench-") as tmp:
        rootfs = make_busybox_rootfs(Path(tmp) / "rootfs")
        executor = Executor(StateLayout(Path(tmp) / "state").ensure(), runtime)
        await executor.start()
        raws = {mode: RawRuntime(rootfs, runtime, mode) for mode in ("prepared", "ip", "none")}
        times: dict[str, list[float]] = {name: [] for name in ("executor", "executor-nonet")}
        times.update({f"raw-{mode}": [] for mode in raws})
        spec = ContainerSpec(args=("true",))
        nonet = ContainerSpec(args=("true",), network=False)
        try:
            for i in range(runs + 2):
                rows: list[tuple[str, float]] = []
                start = time.perf_counter()
                await executor.run(rootfs, spec)
                rows.append(("executor", time.perf_counter() - start))
                start = time.perf_counter()
                await executor.run(rootfs, nonet)
                rows.append(("executor-nonet", time.perf_counter() - start))
                for mode, raw in raws.items():
                    rows.append((f"raw-{mode}", raw.run_once()))
                if i >= 2:  # warm-up rounds
                    for name, value in rows:
                        times[name].append(value)
        finally:
            for raw in raws.values():
                raw.close()
            await executor.aclose()
    med = {name: statistics.median(values) * 1000 for name, values in times.items()}
    print(f"runtime {executor.runtime}, {runs} interleaved runs of `true`, median ms:")
    for name, value in med.items():
        print(f"  {name:16} {value:7.2f}")
    print(f"  executor / raw (netns setup excluded): {med['executor'] / med['raw-prepared']:.2f}")
    print(f"  executor / raw (netns setup included): {med['executor'] / med['raw-ip']:.2f}")
    print(f"  no network: executor / raw: {med['executor-nonet'] / med['raw-none']:.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runtime", default="crun")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args(argv)
    anyio.run(_compare, args.runtime, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
