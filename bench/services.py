"""A web service and its first client request: dirk's services vs the raw runtime.

Baseline (raw crun, nothing of dirk's engine): a fresh overlay over a busybox root holding
/www/index.html, a fresh network namespace on the `dirk0` bridge, `crun run --detach` of
`httpd -f -p 8080 -h /www`, then
  - "host poll": this process polls http://<container>:8080/ until the first 200 answer;
  - "client": a second raw container (its own overlay and namespace) runs busybox `wget` in a
    retry loop against the server's address until it succeeds, and exits.
Both are timed from the start of the server's rootfs to the first success, with a breakdown
(rootfs, netns, runtime start, first answer).

dirk: `client.with_service_binding("web", web.as_service(...)).with_exec(wget loop)` through
the SDK and an engine daemon on a temporary state dir, uncached (a fresh token each round), to
the client's first successful request; and one uncached client exec without a service, to
split the time into service (start, health check) and client start; the engine log says
how long each service took from its container's start to healthy.

Rounds interleave all variants so machine load hits them alike; medians are printed, and
the ratio dirk / raw with client (target at most 1.5).

    .venv/bin/python bench/services.py [--runs 15]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import dirk
from dirk.workers.executor import network
from dirk.workers.executor.busybox import make_busybox_rootfs
from dirk.workers.executor.hostfiles import hosts_file, read_host_resolv_conf
from dirk.workers.executor.spec import ContainerSpec, HostFiles, ResolvedUser, build_config

BUSYBOX = "127.0.0.1:5000/busybox:latest"
PORT = 8080
PAGE = "hello from the service\n"
SERVER = ("httpd", "-f", "-p", str(PORT), "-h", "/www")
#: The client's loop: tries until wget succeeds, then prints the page and how many failed.
CLIENT_LOOP = (
    "n=0; until wget -q -O /tmp/page http://$TARGET:8080/; do n=$((n+1)); "
    '[ $n -lt 2000 ] || exit 1; usleep 2000; done; cat /tmp/page; echo "retries=$n"'
)
PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
POLL_S = 0.001
DEADLINE_S = 10.0


def _ms(seconds: float) -> float:
    return seconds * 1000


class RawContainer:
    """One container on a fresh overlay and network namespace, run by the raw runtime."""

    def __init__(self, base: Path, lower: Path, name: str, runtime: str) -> None:
        self.dir = base / name
        self.name = name
        self.lower = lower
        self.runtime = shutil.which(runtime) or runtime
        self.state = base / "runtime"
        self.merged = self.dir / "merged"
        self.ns: network.Netns | None = None
        self._mounted = False

    def mount(self, files: dict[str, str]) -> None:
        upper, work = self.dir / "upper", self.dir / "work"
        for d in (upper, work, self.merged):
            d.mkdir(parents=True)
        for rel, text in files.items():
            (upper / rel).parent.mkdir(parents=True, exist_ok=True)
            (upper / rel).write_text(text)
        options = f"lowerdir={self.lower},upperdir={upper},workdir={work}"
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, str(self.merged)],
                       check=True)  # fmt: skip
        self._mounted = True

    def netns(self) -> network.Netns:
        # Not a `dk*` name: dirk's bridge filter drops traffic between `dk*` ports that are
        # no service binding's pair, and this baseline has no bindings (nor that filter's cost).
        tag = secrets.token_hex(3)
        self.ns = network.create_netns(f"bsvc-{tag}", f"bsvc{tag}")
        return self.ns

    def write_bundle(self, args: tuple[str, ...], env: tuple[str, ...] = ()) -> None:
        assert self.ns is not None
        files = HostFiles(
            resolv_conf=self.dir / "resolv.conf",
            hostname=self.dir / "hostname",
            hosts=self.dir / "hosts",
        )
        files.resolv_conf.write_text(read_host_resolv_conf())
        files.hostname.write_text("dirk\n")
        files.hosts.write_text(hosts_file("dirk", None))
        config = build_config(
            ContainerSpec(args=args, env=(PATH, *env)),
            self.merged,
            ResolvedUser(),
            files,
            netns=str(self.ns.path),
            nofile=20000,
            cgroups_path=f"/dirk/bench-{self.name}",
        )
        (self.dir / "config.json").write_text(json.dumps(config))

    def _runtime(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [self.runtime, "--root", str(self.state), *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=check,
        )

    def start_detached(self) -> None:
        """Returns once the process runs; its output goes nowhere (a pipe would be held open
        by the server, and a read of it would never end)."""
        command = [self.runtime, "--root", str(self.state), "run", "--detach"]
        subprocess.run(
            [*command, "--bundle", str(self.dir), self.name],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=True,
        )

    def run(self) -> bytes:
        done = self._runtime("run", "--bundle", str(self.dir), self.name, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"the raw client failed: {done.stderr.decode()[-2000:]}")
        return done.stdout

    def close(self) -> None:
        self._runtime("kill", self.name, "KILL", check=False)
        self._runtime("delete", "--force", self.name, check=False)
        if self._mounted:
            subprocess.run(["umount", str(self.merged)], check=False)
        if self.ns is not None:
            network.remove_netns(self.ns.name)
        shutil.rmtree(self.dir, ignore_errors=True)


def _answers(address: str) -> bool:
    try:
        with socket.create_connection((address, PORT), timeout=1) as conn:
            conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
            head = conn.recv(64)
    except OSError:
        return False
    return head.startswith((b"HTTP/1.0 200", b"HTTP/1.1 200"))


def _until(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError("the raw httpd never answered")
        time.sleep(POLL_S)


def raw_round(base: Path, lower: Path, runtime: str, with_client: bool) -> dict[str, float]:
    """One server start to its first success; the phases in ms."""
    tag = secrets.token_hex(3)
    server = RawContainer(base, lower, f"web-{tag}", runtime)
    client = RawContainer(base, lower, f"cli-{tag}", runtime)
    phases: dict[str, float] = {}
    try:
        start = time.perf_counter()
        server.mount({"www/index.html": PAGE})
        t_rootfs = time.perf_counter()
        ns = server.netns()
        t_netns = time.perf_counter()
        server.write_bundle(SERVER)
        server.start_detached()
        t_started = time.perf_counter()
        phases = {
            "rootfs": _ms(t_rootfs - start),
            "netns": _ms(t_netns - t_rootfs),
            "runtime start": _ms(t_started - t_netns),
        }
        if with_client:
            client.mount({})
            client.netns()
            client.write_bundle(("sh", "-c", CLIENT_LOOP), (f"TARGET={ns.address}",))
            t_client = time.perf_counter()
            out = client.run()
            assert PAGE.encode() in out, out
            done = time.perf_counter()
            phases["client rootfs+netns"] = _ms(t_client - t_started)
            phases["client run to success"] = _ms(done - t_client)
        else:
            _until(lambda: _answers(ns.address))
            done = time.perf_counter()
            phases["first answer"] = _ms(done - t_started)
        phases["total"] = _ms(done - start)
    finally:
        client.close()
        server.close()
    return phases


def dirk_round(
    client: dirk.Client[dirk.Sync],
    web: dirk.Container[dirk.Sync],
    tool: dirk.Container[dirk.Sync],
) -> dict[str, float]:
    """A service bound to an uncached client exec, and the client exec alone; ms."""
    token = secrets.token_hex(8)
    service = web.with_env_variable("ROUND", token).as_service(args=list(SERVER))
    started = time.perf_counter()
    out = (
        tool.with_env_variable("ROUND", token)
        .with_env_variable("TARGET", "web")
        .with_service_binding("web", service)
        .with_exec(["sh", "-c", CLIENT_LOOP])
        .stdout()
    )
    total = time.perf_counter() - started
    assert PAGE in out, out
    retries = int(out.rsplit("retries=", 1)[1])
    started = time.perf_counter()
    tool.with_env_variable("ROUND", token).with_exec(["true"]).sync()
    alone = time.perf_counter() - started
    return {
        "total": _ms(total),
        "client exec alone": _ms(alone),
        "service start + health check (derived)": _ms(total - alone),
        "client retries": float(retries),
    }


def _service_up_times(log: Path) -> list[float]:
    """ms from each httpd service's container start to healthy, as the engine logs it."""
    pattern = re.compile(r"service \S+ \(httpd -f -p 8080 -h /www\) up at \S+ after ([0-9.]+) s")
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return []
    return [float(m.group(1)) * 1000 for m in pattern.finditer(text)]


def _has_services() -> bool:
    return hasattr(dirk.Container, "as_service") and hasattr(dirk.Container, "with_service_binding")


def _medians(rounds: list[dict[str, float]]) -> dict[str, float]:
    keys = rounds[0].keys()
    return {k: statistics.median(r[k] for r in rounds) for k in keys}


def _print(title: str, med: dict[str, float]) -> None:
    print(f"  {title}")
    for name, value in med.items():
        unit = "" if name == "client retries" else " ms"
        print(f"    {name:40} {value:8.2f}{unit}")


def _stop_engine(state: Path) -> None:
    try:
        pid = int(json.loads((state / "engine.json").read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--runtime", default="crun")
    args = parser.parse_args(argv)
    warmup = 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # clean up on `timeout` too
    network.setup_host_network()
    with tempfile.TemporaryDirectory(prefix="dirk-bench-svc-", dir="/var/tmp") as tmp:
        base = Path(tmp)
        lower = make_busybox_rootfs(base / "busybox")
        state = base / "state"
        os.environ["DIRK_STATE_DIR"] = str(state)
        results: dict[str, list[dict[str, float]]] = {"poll": [], "client": [], "dirk": []}
        try:
            connection = dirk.Connection() if _has_services() else None
            client = connection.__enter__() if connection else None
            try:
                if client is not None:
                    web = (
                        client.container()
                        .from_(BUSYBOX)
                        .with_new_file("/www/index.html", PAGE)
                        .with_exposed_port(PORT)
                    )
                    tool = client.container().from_(BUSYBOX)
                    web.sync()
                    tool.sync()
                for i in range(args.runs + warmup):
                    row = {
                        "poll": raw_round(base, lower, args.runtime, with_client=False),
                        "client": raw_round(base, lower, args.runtime, with_client=True),
                    }
                    if client is not None:
                        row["dirk"] = dirk_round(client, web, tool)
                    if i >= warmup:
                        for key, value in row.items():
                            results[key].append(value)
            finally:
                if connection is not None:
                    connection.__exit__(None, None, None)
                up = _service_up_times(state / "engine.log")
        finally:
            _stop_engine(state)
    print(f"  {args.runs} interleaved rounds, medians; server: busybox {' '.join(SERVER)}")
    _print("raw crun, host polls until the first answer", _medians(results["poll"]))
    raw_client = _medians(results["client"])
    _print("raw crun, a raw client container's wget loop", raw_client)
    if results["dirk"]:
        med = _medians(results["dirk"])
        _print("dirk: with_service_binding + client exec (SDK, engine daemon)", med)
        if up:
            started = statistics.median(up[warmup:] or up)
            print(f"    {'of which container start to healthy (log)':40} {started:8.2f} ms")
            rest = med["service start + health check (derived)"] - started
            print(f"    {'so rootfs, netns, binding, the rest':40} {rest:8.2f} ms")
        ratio = med["total"] / raw_client["total"]
        print(f"  ratio dirk / raw (server + client): {ratio:.2f} (target <= 1.5)")
        poll = _medians(results["poll"])["total"]
        print(f"  ratio dirk / raw (host poll): {med['total'] / poll:.2f}")
    else:
        print("  dirk: Container.asService is not in this build; the raw baseline only")
    return 0


if __name__ == "__main__":
    sys.exit(main())
