"""Services through dirk's own SDK against a real `dirk engine` process: a busybox httpd
service bound by alias, its hostname and endpoint, start/stop, typed errors for a service
that exits or never listens, and nothing left behind when the engine is SIGKILLed while a
service runs (the sentinel kills service containers like any other)."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import dirk
from dirk.errors import ExecError, ServiceExitedError, ServiceStartError
from dirk.state.layout import StateLayout
from dirk.workers.executor.executor import engine_tag
from tests.integration.sdk_engine import (
    ENGINE_STOP_S,
    RunningEngine,
    clean_env,
    foreground_engine,
    log_tail,
    mounts_under,
    new_state_dir,
    remove_state,
    require_root,
    wait_until_serving,
)
from tests.integration.test_engine_death import network_leftovers, processes_with

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_leaks")]

HTTPD = (
    "mkdir -p /www && cat /proc/sys/kernel/random/uuid > /www/index.html && "
    "exec httpd -f -p 8080 -h /www"
)


@pytest.fixture(scope="module")
def engine() -> Iterator[RunningEngine]:
    yield from foreground_engine(DIRK_SERVICE_START_TIMEOUT="3", DIRK_SERVICE_IDLE_GRACE="0.2")


def connect(engine: RunningEngine, workdir: Path) -> dirk.Connection:
    return dirk.Connection(dirk.Config(engine=engine.socket_url, workdir=workdir))


def test_a_bound_service_answers_by_alias_hostname_and_endpoint(
    engine: RunningEngine, busybox_ref: str, tmp_path: Path
) -> None:
    with connect(engine, tmp_path) as client:
        web = (
            client.container()
            .from_(busybox_ref)
            .with_exposed_port(8080, description="web root")
            .as_service(args=["sh", "-c", HTTPD])
        )
        hostname = web.hostname()
        endpoint = web.endpoint(scheme="http")
        assert endpoint == f"http://{hostname}:8080"
        [port] = web.ports()
        assert (port.port(), port.description()) == (8080, "web root")
        out = (
            client.container()
            .from_(busybox_ref)
            .with_service_binding("web", web)
            .with_env_variable("NONCE", uuid.uuid4().hex)
            .with_exec(["sh", "-c", f"wget -qO- http://web:8080/; wget -qO- {endpoint}/"])
            .stdout()
        )
        first, second = out.split()
        assert first == second and len(first) == 36


def test_start_and_stop_through_the_sdk(
    engine: RunningEngine, busybox_ref: str, tmp_path: Path
) -> None:
    marker = f"/srv-{uuid.uuid4().hex[:8]}"
    with connect(engine, tmp_path) as client:
        web = (
            client.container()
            .from_(busybox_ref)
            .with_exposed_port(8080)
            .as_service(args=["sh", "-c", HTTPD.replace("/www", marker)])
        )
        web.start()
        assert processes_with(marker)
        time.sleep(0.5)  # past the idle grace: start() holds it
        assert processes_with(marker)
        web.stop()
        assert not processes_with(marker)


def test_a_service_that_exits_is_a_typed_exec_error(
    engine: RunningEngine, busybox_ref: str, tmp_path: Path
) -> None:
    with connect(engine, tmp_path) as client:
        broken = (
            client.container()
            .from_(busybox_ref)
            .with_exposed_port(8080)
            .as_service(args=["sh", "-c", "echo cannot-read-config >&2; exit 7"])
        )
        client_ctr = client.container().from_(busybox_ref).with_service_binding("db", broken)
        with pytest.raises(ServiceExitedError) as caught:
            client_ctr.with_exec(["true"]).sync()
        assert isinstance(caught.value, ExecError)  # Dagger's shape: an exec error
        assert caught.value.exit_code == 7
        assert "cannot-read-config" in caught.value.stdout
        assert "cannot-read-config" in str(caught.value)


def test_a_service_that_never_listens_fails_within_its_timeout(
    engine: RunningEngine, busybox_ref: str, tmp_path: Path
) -> None:
    with connect(engine, tmp_path) as client:
        silent = (
            client.container()
            .from_(busybox_ref)
            .with_exposed_port(5432)
            .as_service(args=["sh", "-c", "echo warming-up; sleep 600"])
        )
        started = time.monotonic()
        with pytest.raises(ServiceStartError) as caught:
            client.container().from_(busybox_ref).with_service_binding("db", silent).with_exec(
                ["true"]
            ).sync()
        assert time.monotonic() - started < 15
        message = str(caught.value)
        assert "5432/tcp" in message and "warming-up" in message and silent.hostname() in message
        assert not isinstance(caught.value, ExecError)
    assert not processes_with("echo warming-up; sleep 600")


def test_a_killed_engine_leaves_no_service_behind(registry: str) -> None:
    require_root()
    state = new_state_dir()
    log = state.parent / "engine.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dirk", "engine"],
            env=clean_env(state),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    marker = f"/srv-{uuid.uuid4().hex[:8]}"
    try:
        info = wait_until_serving(state, log, proc)

        def pipeline() -> None:
            config = dirk.Config(engine=f"unix://{info['socket']}", workdir=state.parent)
            try:
                with dirk.Connection(config) as client:
                    image = f"{registry}/busybox:latest"
                    web = (
                        client.container()
                        .from_(image)
                        .with_exposed_port(8080)
                        .as_service(args=["sh", "-c", HTTPD.replace("/www", marker)])
                    )
                    client.container().from_(image).with_service_binding("web", web).with_exec(
                        ["sh", "-c", "wget -qO- http://web:8080/ && sleep 600"]
                    ).sync()
            except BaseException:  # the engine dies under it
                pass

        threading.Thread(target=pipeline, daemon=True).start()
        deadline = time.monotonic() + 60
        while not (processes_with(marker) and processes_with("sleep 600")):
            assert time.monotonic() < deadline, f"the service never started:\n{log_tail(log)}"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        tag = engine_tag(StateLayout(state))

        def leftovers() -> list[str]:
            found = [f"process {pid}" for pid in processes_with(marker)]
            found += [f"process {pid}" for pid in processes_with(str(state))]
            found += [f"mount {m}" for m in mounts_under(state)]
            found += [f"network {n}" for n in network_leftovers(tag)]
            return found

        deadline = time.monotonic() + 10
        while leftovers():
            assert time.monotonic() < deadline, f"left behind: {leftovers()}\n{log_tail(log)}"
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(ENGINE_STOP_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        remove_state(state)
