"""A private Docker daemon for tests of the host's image store: Debian's docker.io, no bridge,
no iptables rules, its own data root and socket under /var/tmp, stopped at the end."""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

#: Seconds the daemon gets to answer `docker version`.
START_S = 60


class PrivateDockerd:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.socket = base / "docker.sock"
        self.env = {"DOCKER_HOST": f"unix://{self.socket}", "PATH": "/usr/sbin:/usr/bin:/bin"}

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["/usr/bin/docker", *args], env=self.env, capture_output=True, text=True, timeout=300
        )
        if check:
            assert done.returncode == 0, f"docker {' '.join(args)} failed: {done.stderr}"
        return done


@pytest.fixture(scope="module")
def dockerd() -> Iterator[PrivateDockerd]:
    for tool in ("/usr/sbin/dockerd", "/usr/bin/docker"):
        if not Path(tool).exists():
            pytest.fail(f"{tool} is missing: install Debian's docker.io (make setup does)")
    base = Path(tempfile.mkdtemp(prefix="dirk-dockerd-", dir="/var/tmp"))
    daemon = PrivateDockerd(base)
    log = (base / "dockerd.log").open("wb")
    proc = subprocess.Popen(
        [
            "/usr/sbin/dockerd",
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-masq=false",
            f"--data-root={base / 'data'}",
            f"--exec-root={base / 'exec'}",
            f"--pidfile={base / 'docker.pid'}",
            f"--host=unix://{daemon.socket}",
            "--insecure-registry=127.0.0.1:5000",
        ],
        env=daemon.env,
        stdout=log,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + START_S
        while daemon.docker("version", check=False).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                text = (base / "dockerd.log").read_text(errors="replace")[-3000:]
                pytest.fail(f"the private dockerd did not start:\n{text}")
            time.sleep(0.2)
        yield daemon
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        subprocess.run(["umount", "-R", str(base / "data")], capture_output=True, check=False)
        shutil.rmtree(base, ignore_errors=True)
