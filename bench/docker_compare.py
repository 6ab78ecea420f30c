"""dirk against Docker 20.10 + BuildKit, as whole processes a user would run, in paired
interleaved rounds (medians):

1. a 20-step pipeline, cold (every step new)  vs `docker build --no-cache` of the same 20 RUNs
2. the same pipeline fully cached, a new program (`python ci.py`) vs a cached `docker build`
3. a program running one uncached exec (`true`) vs `docker run --rm busybox true`

Targets: 2 <= 0.5x and 3 <= 0.5x. Installs Debian's docker.io when missing
(`scripts/apt-install.sh`), starts a private dockerd (`--bridge none --iptables=false`, its own
data root and socket under /var/tmp, `--insecure-registry 127.0.0.1:5000` to pull the test
busybox from the local registry) and stops it at the end; dirk gets its own engine on a
temporary state dir. BuildKit's RUN steps get no network (no bridge); dirk's get their usual one.

    .venv/bin/python bench/docker_compare.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dockerfile_build import PrivateDockerd, docker_binaries
from latency import BUSYBOX, CI_PROGRAM, PY, Engine, timed

ROOT = Path(__file__).resolve().parents[1]
STEPS = 20

EXEC_PROGRAM = f"""\
import sys
import dirk

with dirk.Connection() as client:
    ctr = client.container().from_({BUSYBOX!r}).with_env_variable("RUN", sys.argv[1])
    ctr.with_exec(["true"]).sync()
"""


def dockerfile(salt: str) -> str:
    lines = [f"FROM {BUSYBOX}"]
    lines += [f'RUN sh -c "echo {salt}-{i} >> /log"' for i in range(STEPS)]
    return "\n".join(lines) + "\n"


def ensure_docker() -> tuple[Path, Path]:
    found = docker_binaries()
    if found is None:
        subprocess.run(["bash", str(ROOT / "scripts/apt-install.sh"), "docker.io"], check=True)
        found = docker_binaries()
    if found is None:
        raise SystemExit("docker.io did not install dockerd and docker")
    return found


def docker_build(daemon: PrivateDockerd, ctx: Path, *, no_cache: bool) -> float:
    args = ["build", "-q", "--network=none", "-t", "dirk-bench-steps:latest"]
    if no_cache:
        args.append("--no-cache")
    started = time.perf_counter()
    result = daemon.run([*args, str(ctx)], check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"docker build failed:\n{result.stderr.decode(errors='replace')}")
    return elapsed


def docker_run(daemon: PrivateDockerd) -> float:
    started = time.perf_counter()
    daemon.run(["run", "--rm", "--network=none", BUSYBOX, "true"])
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    dockerd, docker = ensure_docker()
    # As an installed package is: no round pays for compiling dirk's sources.
    compileall.compile_dir(str(ROOT / "src" / "dirk"), quiet=1)
    base = Path(tempfile.mkdtemp(prefix="dirk-bench-dc-", dir="/var/tmp"))
    (base / "dirk").mkdir()
    (base / "docker").mkdir()
    daemon = PrivateDockerd(dockerd, docker, base / "docker")
    engine = Engine(base / "dirk" / "s")
    env = engine.env
    times: dict[str, list[float]] = {
        k: [] for k in ("dirk cold", "docker cold", "dirk cached", "docker cached", "dirk exec")
    }
    times["docker run"] = []
    try:
        daemon.run(["pull", "-q", BUSYBOX])
        ci = base / "ci.py"
        ci.write_text(CI_PROGRAM)
        one = base / "one.py"
        one.write_text(EXEC_PROGRAM)
        ctx = base / "ctx"
        ctx.mkdir()
        # Warm-up: both have the base image, the interpreter's files are in the page cache.
        (ctx / "Dockerfile").write_text(dockerfile("warm-up"))
        docker_build(daemon, ctx, no_cache=False)
        timed([PY, str(ci), "warm-up"], env)
        timed([PY, str(one), "warm-up"], env)
        docker_run(daemon)
        for r in range(args.rounds):
            salt = f"{time.time_ns()}-{r}"
            (ctx / "Dockerfile").write_text(dockerfile(salt))
            pairs = [
                ("dirk cold", lambda s=salt: timed([PY, str(ci), s], env)),
                ("docker cold", lambda: docker_build(daemon, ctx, no_cache=True)),
                ("dirk cached", lambda s=salt: timed([PY, str(ci), s], env)),
                ("docker cached", lambda: docker_build(daemon, ctx, no_cache=False)),
                ("dirk exec", lambda s=salt: timed([PY, str(one), s], env)),
                ("docker run", lambda: docker_run(daemon)),
            ]
            for i in range(0, len(pairs), 2):
                pair = pairs[i : i + 2] if r % 2 == 0 else pairs[i : i + 2][::-1]
                for name, run in pair:
                    times[name].append(run())
    finally:
        daemon.stop()
        engine.stop()
        shutil.rmtree(base, ignore_errors=True)
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    rows = [
        ("20-step pipeline cold", "dirk cold", "docker cold", None),
        ("20-step pipeline fully cached", "dirk cached", "docker cached", 0.5),
        ("one uncached exec program vs docker run", "dirk exec", "docker run", 0.5),
    ]
    for title, mine, theirs, target in rows:
        ratio = med[mine] / med[theirs]
        goal = f"target <= {target}x, {'OK' if ratio <= target else 'over'}" if target else ""
        print(
            f"  {title:40} dirk {med[mine]:7.0f} ms  docker {med[theirs]:7.0f} ms  "
            f"{ratio:5.2f}x {goal}"
        )


if __name__ == "__main__":
    os.environ.setdefault("TMPDIR", "/var/tmp")
    main()
