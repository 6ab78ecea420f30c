"""A program killed with SIGKILL leaves no session and no container behind on the real engine.

One `dirk engine` serves the module. Each test starts a real program (a dirk SDK script,
`dirk session`, `dirk run`) pointed at it, lets it start `sleep 300` in a busybox container, kills
it, and checks what the engine's operator would: the session list (`GET /sessions` on the
socket), the host's processes, the runtime's state and the engine log.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.sdk_engine import (
    RunningEngine,
    clean_env,
    foreground_engine,
    log_tail,
    mounts_under,
)

pytestmark = pytest.mark.integration

#: Seconds a killed program's session and container get to disappear (measured: well under 1).
CLEANUP_LIMIT_S = 5.0
#: Seconds a program gets to reach its exec (the first test pulls the image).
START_LIMIT_S = 60.0
NONCE_ENV = "LIVENESS_NONCE"


@pytest.fixture(scope="module")
def engine() -> Iterator[RunningEngine]:
    yield from foreground_engine()


def sessions(engine: RunningEngine) -> list[dict[str, Any]]:
    """The engine's live sessions, from its admin list on the unix socket."""
    transport = httpx.HTTPTransport(uds=str(engine.info["socket"]))
    with httpx.Client(transport=transport, trust_env=False, timeout=5) as http:
        answer = http.get("http://engine/sessions")
    assert answer.status_code == 200, answer.text
    listed: list[dict[str, Any]] = answer.json()["sessions"]
    return listed


def sleepers(nonce: str) -> list[int]:
    """Pids of `sleep 300` processes on this host started with our nonce in their environment."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if f.read() != b"sleep\x00300\x00":
                    continue
            with open(f"/proc/{entry}/environ", "rb") as f:
                if f"{NONCE_ENV}={nonce}".encode() not in f.read().split(b"\x00"):
                    continue
        except OSError:
            continue
        found.append(int(entry))
    return found


def runtime_leftovers(engine: RunningEngine) -> list[str]:
    """Containers the runtime still knows, bundles and overlay mounts under the state dir."""
    run = engine.state_dir / "run"
    left = [str(p) for p in (run / "runtime").glob("*/*") if p.is_dir()]
    left += [str(p) for p in (run / "c").glob("*")]
    left += mounts_under(run / "m") if (run / "m").exists() else []
    return left


def wait_for(what: str, check: Callable[[], bool], limit: float, engine: RunningEngine) -> float:
    """Seconds until `check()` holds; fails with the engine log after `limit`."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > limit:
            pytest.fail(f"{what} did not happen within {limit} s\n{log_tail(engine.log)}")
        time.sleep(0.01)
    return time.monotonic() - started


@contextlib.contextmanager
def reaped(proc: subprocess.Popen[Any]) -> Iterator[subprocess.Popen[Any]]:
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def kill_and_measure(
    engine: RunningEngine, proc: subprocess.Popen[Any], nonce: str
) -> dict[str, float]:
    """SIGKILLs `proc` (whose session runs the nonce's `sleep 300`) and measures the cleanup."""
    assert len(sessions(engine)) == 1
    killed = time.monotonic()
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    session_s = wait_for(
        "the session's end", lambda: sessions(engine) == [], CLEANUP_LIMIT_S, engine
    )
    gone_s = wait_for("the container's end", lambda: not sleepers(nonce), CLEANUP_LIMIT_S, engine)
    state_s = wait_for(
        "the runtime state's removal",
        lambda: not runtime_leftovers(engine),
        CLEANUP_LIMIT_S,
        engine,
    )
    total = time.monotonic() - killed
    assert "ended: its client went away" in log_tail(engine.log, 20000)
    return {"session": session_s, "container": gone_s, "state": state_s, "total": total}


def report(name: str, numbers: dict[str, float]) -> None:
    parts = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in numbers.items())
    print(f"\n{name}: after SIGKILL, gone within: {parts}")


SDK_PROGRAM = textwrap.dedent(
    """
    import sys
    import dirk

    engine, image, nonce = sys.argv[1:]
    with dirk.Connection(dirk.Config(engine=engine)) as client:
        print("connected", flush=True)
        (
            client.container()
            .from_(image)
            .with_env_variable("LIVENESS_NONCE", nonce)
            .with_exec(["sleep", "300"])
            .sync()
        )
    """
)


def test_sigkilled_sdk_program_leaves_no_session_and_no_container(
    engine: RunningEngine, busybox_ref: str, tmp_path: Path
) -> None:
    nonce = uuid.uuid4().hex
    proc = subprocess.Popen(
        [sys.executable, "-c", SDK_PROGRAM, engine.socket_url, busybox_ref, nonce],
        env=clean_env(),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    with reaped(proc):
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"connected\n", proc.stderr.read()  # type: ignore[union-attr]
        [listed] = sessions(engine)
        assert listed["attached"] == 1 and listed["labels"]["dirk.sdk.name"] == "python"
        wait_for("the exec's start", lambda: bool(sleepers(nonce)), START_LIMIT_S, engine)
        numbers = kill_and_measure(engine, proc, nonce)
    report("SDK program", numbers)


def _start_query(port: int, token: str, query: str) -> tuple[threading.Thread, list[Any]]:
    """POST /query in a thread (it blocks for as long as the exec runs); its answer lands in
    the returned list."""
    answers: list[Any] = []

    def post() -> None:
        with httpx.Client(trust_env=False, timeout=60) as http:
            try:
                answers.append(
                    http.post(
                        f"http://127.0.0.1:{port}/query", json={"query": query}, auth=(token, "")
                    ).json()
                )
            except httpx.HTTPError as exc:
                answers.append(exc)

    thread = threading.Thread(target=post, daemon=True)
    thread.start()
    return thread, answers


def sleep_query(image: str, nonce: str) -> str:
    return (
        f'{{ container {{ from(address: "{image}") {{ withEnvVariable(name: "{NONCE_ENV}", '
        f'value: "{nonce}") {{ withExec(args: ["sleep", "300"]) {{ sync }} }} }} }} }}'
    )


def test_sigkilled_dirk_session_leaves_no_session_and_no_container(
    engine: RunningEngine, busybox_ref: str
) -> None:
    nonce = uuid.uuid4().hex
    proc = subprocess.Popen(
        [sys.executable, "-m", "dirk", "session"],
        env=clean_env(DIRK_ENGINE=engine.socket_url),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    with reaped(proc):
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read()  # type: ignore[union-attr]
        params = json.loads(line)
        thread, answers = _start_query(
            params["port"], params["session_token"], sleep_query(busybox_ref, nonce)
        )
        wait_for("the exec's start", lambda: bool(sleepers(nonce)), START_LIMIT_S, engine)
        numbers = kill_and_measure(engine, proc, nonce)
        thread.join(10)
    report("dirk session", numbers)
    [answer] = answers
    assert "the session ended while this query was running" in json.dumps(answer)


def test_sigkilled_dirk_run_ends_its_session(engine: RunningEngine) -> None:
    child = textwrap.dedent(
        """
        import os, time
        print(os.environ["DAGGER_SESSION_TOKEN"], flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "dirk", "run", "--", sys.executable, "-c", child],
        env=clean_env(DIRK_ENGINE=engine.socket_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its command too is killed at the end, as a group
    )
    try:
        assert proc.stdout is not None
        token = proc.stdout.readline().decode().strip()
        assert token, proc.stderr.read()  # type: ignore[union-attr]
        assert [s["id"] for s in sessions(engine)] == [token[:8]]
        killed = time.monotonic()
        proc.send_signal(signal.SIGKILL)  # `dirk run` only: its command lives on
        proc.wait(10)
        wait_for("the session's end", lambda: sessions(engine) == [], CLEANUP_LIMIT_S, engine)
        print(f"\ndirk run: session gone {(time.monotonic() - killed) * 1000:.0f} ms after SIGKILL")
        answer = httpx.post(
            f"http://127.0.0.1:{engine.port}/query",
            json={"query": "{ version }"},
            auth=(token, ""),
            trust_env=False,
        )
        assert answer.status_code == 401  # the orphaned command's session is gone
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


NORMAL_PROGRAM = textwrap.dedent(
    """
    import sys
    import dirk

    engine, image = sys.argv[1:]
    with dirk.Connection(dirk.Config(engine=engine)) as client:
        out = client.container().from_(image).with_exec(["echo", "hi"]).stdout()
        print(out.strip(), flush=True)
        sys.stdin.readline()
    print("done", flush=True)
    """
)


def test_normal_exit_still_ends_the_session_with_delete(
    engine: RunningEngine, busybox_ref: str, tmp_path: Path
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", NORMAL_PROGRAM, engine.socket_url, busybox_ref],
        env=clean_env(),
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    with reaped(proc):
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline() == b"hi\n", proc.stderr.read()  # type: ignore[union-attr]
        [listed] = sessions(engine)
        assert listed["attached"] == 1
        proc.stdin.write(b"\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == b"done\n"
        assert proc.wait(30) == 0
    assert sessions(engine) == []
    log = log_tail(engine.log, 20000)
    assert f"session {listed['id']} ended: its client ended it" in log
    assert f"session {listed['id']} ended: its client went away" not in log


def test_session_without_attach_lives_until_delete(engine: RunningEngine) -> None:
    transport = httpx.HTTPTransport(uds=str(engine.info["socket"]))
    with httpx.Client(transport=transport, trust_env=False, timeout=10) as control:
        created = control.post("http://engine/sessions", json={"workdir": "/", "labels": {}})
        token = created.json()["token"]
        # Another program's attached session comes and goes meanwhile.
        held = control.post("http://engine/sessions", json={"workdir": "/", "labels": {}})
        held_token = held.json()["token"]
        with control.stream(
            "GET", f"http://engine/sessions/{held_token}/attach", auth=(held_token, "")
        ) as attach:
            assert next(attach.iter_lines()) == '{"attached":true}'
        wait_for(
            "the attached session's end",
            lambda: [s["id"] for s in sessions(engine)] == [token[:8]],
            CLEANUP_LIMIT_S,
            engine,
        )
        time.sleep(1.0)  # ten checks of the watcher
        [listed] = sessions(engine)
        assert (listed["id"], listed["attached"]) == (token[:8], 0)
        answer = httpx.post(
            f"http://127.0.0.1:{engine.port}/query",
            json={"query": "{ version }"},
            auth=(token, ""),
            trust_env=False,
        )
        assert answer.status_code == 200 and answer.json()["data"]["version"]
        ended = control.delete(f"http://engine/sessions/{token}", auth=(token, ""))
        assert ended.status_code == 200
    assert sessions(engine) == []
