"""A two-stage Dockerfile built by dirk (`Directory.dockerBuild` through the SDK) and by Debian's
docker.io with BuildKit (`DOCKER_BUILDKIT=1 docker build`), cold and fully cached, in
interleaved rounds. BuildKit's RUN steps get no network (the private dockerd has no bridge);
dirk's get their usual one, so the comparison is conservative for dirk.

Cold: a new salt per round (a build argument every RUN sees, and a file of the context), so
every step misses the cache of both builders; the base image is already local to both (pulls
are benchmarked in pull.py). Cached: the same build again, from a new session / a new
`docker build`. Targets: dirk / BuildKit <= 1.0x cold and <= 0.3x cached.

Needs Debian's docker.io (dockerd and its docker CLI; it installs nothing itself). It starts a
private dockerd (no bridge, no iptables, its own data root and socket under /var/tmp) and stops
it at the end. DOCKER_ROOT may name a directory holding usr/sbin/dockerd and usr/bin/docker (an
unpacked docker.io package) instead of /.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dirk

BUSYBOX = "127.0.0.1:5000/busybox:latest"
ROUNDS = 5
DOCKERFILE = f"""\
FROM {BUSYBOX} AS build
ARG SALT
WORKDIR /src
COPY src/ ./
RUN echo "$SALT" > salt && for i in $(seq 1 500); do echo "line $i $SALT"; done > gen.txt
RUN tar -cf /out.tar -C /src .

FROM {BUSYBOX}
ARG SALT
ENV APP_HOME=/app
WORKDIR /app
COPY --from=build /out.tar /tmp/
RUN tar -xf /tmp/out.tar -C /app && rm /tmp/out.tar && wc -l gen.txt
COPY --chmod=0755 run.sh /usr/local/bin/run
USER 1000
ENTRYPOINT ["/usr/local/bin/run"]
"""


def docker_binaries() -> tuple[Path, Path] | None:
    root = Path(os.environ.get("DOCKER_ROOT", "/"))
    dockerd, docker = root / "usr/sbin/dockerd", root / "usr/bin/docker"
    if dockerd.exists() and docker.exists():
        return dockerd, docker
    return None


class PrivateDockerd:
    """A dockerd of our own: no bridge, no iptables rules, state under `base`."""

    def __init__(self, dockerd: Path, docker: Path, base: Path) -> None:
        self.docker = docker
        self.base = base
        self.socket = base / "docker.sock"
        bin_dirs = {str(dockerd.parent), str(docker.parent)}
        self.env = {
            **os.environ,
            "PATH": ":".join([*sorted(bin_dirs), os.environ.get("PATH", "/usr/bin:/bin")]),
            "DOCKER_HOST": f"unix://{self.socket}",
            "DOCKER_BUILDKIT": "1",
            "DOCKER_CONFIG": str(base / "config"),
        }
        self.log = (base / "dockerd.log").open("wb")
        self.proc = subprocess.Popen(
            [
                str(dockerd),
                "--bridge=none",
                "--iptables=false",
                "--ip-masq=false",
                "--userland-proxy=false",
                f"--data-root={base / 'data'}",
                f"--exec-root={base / 'exec'}",
                f"--pidfile={base / 'docker.pid'}",
                f"--host=unix://{self.socket}",
                "--insecure-registry=127.0.0.1:5000",
            ],
            env=self.env,
            stdout=self.log,
            stderr=self.log,
        )
        deadline = time.monotonic() + 60
        while self.run(["version"], check=False).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                log = (base / "dockerd.log").read_text(errors="replace")[-3000:]
                raise SystemExit(f"the private dockerd did not start:\n{log}")
            time.sleep(0.2)

    def run(self, args: list[str], *, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [str(self.docker), *args], env=self.env, capture_output=True, check=check
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def write_context(ctx: Path, salt: str) -> None:
    (ctx / "src").mkdir(parents=True, exist_ok=True)
    for i in range(200):
        (ctx / "src" / f"module_{i}.txt").write_text(f"module {i}\n" * 20)
    (ctx / "src" / "salt.txt").write_text(salt)
    (ctx / "run.sh").write_text('#!/bin/sh\necho "running from $APP_HOME"\n')
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    (ctx / ".dockerignore").write_text("*.log\n")


def dirk_build(ctx: Path, salt: str) -> float:
    """One build in a new session (as a new program would open)."""
    started = time.perf_counter()
    with dirk.Connection(dirk.Config(workdir=ctx.parent)) as client:
        args = [dirk.BuildArg(name="SALT", value=salt)]
        client.host().directory(ctx.name).docker_build(build_args=args).sync()
    return time.perf_counter() - started


def docker_build(daemon: PrivateDockerd, ctx: Path, salt: str) -> float:
    started = time.perf_counter()
    # --bridge=none leaves BuildKit no network for RUN but "none" (dirk's steps get one).
    args = ["build", "-q", "--network=none", "-t", "dirk-bench:latest"]
    result = daemon.run([*args, "--build-arg", f"SALT={salt}", str(ctx)], check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"docker build failed:\n{result.stderr.decode(errors='replace')}")
    return elapsed


def main() -> None:
    found = docker_binaries()
    if found is None:
        print(
            "  skipped: this benchmark compares with Debian's docker.io (dockerd + BuildKit); "
            "run `apt-get install docker.io` (or set DOCKER_ROOT to an unpacked docker.io)"
        )
        return
    base = Path(tempfile.mkdtemp(prefix="dirk-bench-docker-", dir="/var/tmp"))
    state = Path(tempfile.mkdtemp(prefix="dirk-bench-df-", dir="/var/tmp"))
    os.environ["DIRK_STATE_DIR"] = str(state / "state")
    daemon = PrivateDockerd(*found, base)
    times: dict[str, list[float]] = {k: [] for k in ("dirk cold", "docker cold", "dirk", "docker")}
    try:
        ctx = state / "ctx"
        # Both builders get the base image once, outside the measured rounds.
        write_context(ctx, "warm-up")
        dirk_build(ctx, "warm-up")
        docker_build(daemon, ctx, "warm-up")
        for round_ in range(ROUNDS):
            salt = f"{time.time_ns()}-{round_}"
            write_context(ctx, salt)
            order = ["dirk cold", "docker cold"]
            if round_ % 2:
                order.reverse()
            for name in order:
                cold = dirk_build(ctx, salt) if name == "dirk cold" else None
                times[name].append(cold if cold is not None else docker_build(daemon, ctx, salt))
            times["dirk"].append(dirk_build(ctx, salt))
            times["docker"].append(docker_build(daemon, ctx, salt))
    finally:
        daemon.stop()
        _stop_engine(state / "state")
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(state, ignore_errors=True)
    medians = {k: statistics.median(v) * 1000 for k, v in times.items()}
    rows = {
        "two-stage Dockerfile cold, dirk (ms)": medians["dirk cold"],
        "two-stage Dockerfile cold, docker BuildKit (ms)": medians["docker cold"],
        "ratio cold dirk / BuildKit (target <= 1.0)": medians["dirk cold"] / medians["docker cold"],
        "fully cached, dirk new session (ms)": medians["dirk"],
        "fully cached, docker build (ms)": medians["docker"],
        "ratio cached dirk / BuildKit (target <= 0.3)": medians["dirk"] / medians["docker"],
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
    sys.exit(main())
