"""Failures a user meets with the dirk SDK: each ends quickly with a dirk error naming the problem.

Against a real engine (one per module): a wrong session token, malformed or invalid GraphQL sent
raw, an image or tag that does not exist, bad paths, a missing command, an engine address where
nothing listens, Ctrl-C. Each arrives as the `dirk.errors` class the engine raised.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

import dirk
from dirk.errors import (
    ClientConnectionError,
    CommandNotFoundError,
    ExecError,
    HostPathError,
    ImageNotFoundError,
    ImageReferenceError,
    InvalidArgumentError,
    SessionAuthError,
    SnapshotPathError,
)
from tests.integration.sdk_engine import RunningEngine, clean_env, foreground_engine

pytestmark = [pytest.mark.integration]

#: No error path may take longer than this (the registry and the engine are local).
QUICK_S = 5.0


@pytest.fixture(scope="module")
def engine() -> Iterator[RunningEngine]:
    yield from foreground_engine()


@pytest.fixture
def bare_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No DIRK_* or DAGGER_* variable: each test sets the ones it is about."""
    for name in list(os.environ):
        if name.startswith(("DIRK_", "DAGGER_")):
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.fixture(scope="module")
def token(engine: RunningEngine) -> str:
    """A session opened the way the SDK does: POST /sessions on the unix socket."""
    transport = httpx.HTTPTransport(uds=str(engine.info["socket"]))
    with httpx.Client(transport=transport, base_url="http://engine", trust_env=False) as http:
        response = http.post("/sessions", json={"workdir": "/tmp", "labels": {}})
    assert response.status_code == 200, response.text
    return str(response.json()["token"])


def post_query(engine: RunningEngine, auth: tuple[str, str], **kwargs: Any) -> httpx.Response:
    with httpx.Client(trust_env=False, timeout=QUICK_S) as http:
        return http.post(f"http://127.0.0.1:{engine.port}/query", auth=auth, **kwargs)


def graphql_error(response: httpx.Response) -> str:
    """The first error message of a JSON GraphQL error answer (checked to be one)."""
    assert response.headers["content-type"].startswith("application/json"), response.text
    body = response.json()
    assert body["data"] is None, body
    message = str(body["errors"][0]["message"])
    assert "Traceback" not in response.text
    return message


def test_wrong_token_gets_session_auth_error(
    engine: RunningEngine, bare_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    response = post_query(engine, ("not-a-session", ""), json={"query": "{ version }"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Basic")
    assert "session token" in graphql_error(response)

    # What a program sees when it is handed a session that does not exist (or has ended).
    bare_env.setenv("DAGGER_SESSION_PORT", str(engine.port))
    bare_env.setenv("DAGGER_SESSION_TOKEN", "not-a-session")
    started = time.monotonic()
    config = dirk.Config(workdir=tmp_path)
    with pytest.raises(SessionAuthError) as caught, dirk.Connection(config) as client:
        client.version()
    assert time.monotonic() - started < QUICK_S
    assert f"127.0.0.1:{engine.port}" in str(caught.value)
    assert "token" in str(caught.value)


@pytest.mark.parametrize(
    ("request_kwargs", "expected"),
    [
        pytest.param({"json": {"query": "{ container { from("}}, "Syntax Error", id="syntax"),
        pytest.param({"json": {"query": "{ nope }"}}, "Cannot query field 'nope'", id="field"),
        pytest.param(
            {"json": {"query": "{ container { from(address: 5) { id } } }"}},
            "String cannot represent a non string value: 5",
            id="argument-type",
        ),
        pytest.param(
            {"json": {"query": '{ container { withExec(args: ["true"], bogus: 1) { id } } }'}},
            "Unknown argument 'bogus'",
            id="argument-name",
        ),
        pytest.param(
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
            "not JSON",
            id="body",
        ),
        pytest.param({"json": {"variables": {}}}, "query", id="no-query"),
    ],
)
def test_bad_requests_get_a_json_graphql_error(
    engine: RunningEngine, token: str, request_kwargs: dict[str, Any], expected: str
) -> None:
    started = time.monotonic()
    response = post_query(engine, (token, ""), **request_kwargs)
    assert time.monotonic() - started < QUICK_S
    assert response.status_code in (200, 400)
    assert expected in graphql_error(response)
    # The session is still usable afterwards.
    assert post_query(engine, (token, ""), json={"query": "{ version }"}).json()["data"]


def test_unknown_image_gets_image_not_found_naming_it(
    engine: RunningEngine, bare_env: pytest.MonkeyPatch, registry: str, tmp_path: Path
) -> None:
    missing = f"{registry}/no-such-image-{uuid.uuid4().hex[:8]}:latest"
    started = time.monotonic()
    with dirk.Connection(dirk.Config(engine=engine.socket_url, workdir=tmp_path)) as client:
        with pytest.raises(ImageNotFoundError) as caught:
            client.container().from_(missing).with_exec(["true"]).stdout()
        assert not isinstance(caught.value, ExecError)
        assert missing in str(caught.value)
        assert caught.value.path == ["container", "from"]  # the field that failed

        with pytest.raises(ImageReferenceError) as bad:
            client.container().from_("Not A Reference!").with_exec(["true"]).stdout()
        assert isinstance(bad.value, InvalidArgumentError)
        assert "Not A Reference!" in str(bad.value)
    assert time.monotonic() - started < QUICK_S


def test_missing_tag_is_image_not_found_through_dag(
    engine: RunningEngine, busybox_ref: str, tmp_path: Path
) -> None:
    """`except ImageNotFoundError` works in a program as inside the engine (Dagger's entry)."""
    missing_tag = busybox_ref.rsplit(":", 1)[0] + f":no-such-tag-{uuid.uuid4().hex[:8]}"
    with dirk.connection(dirk.Config(engine=engine.socket_url, workdir=tmp_path)):
        with pytest.raises(ImageNotFoundError) as caught:
            dirk.dag.container().from_(missing_tag).with_exec(["true"]).sync()
        assert missing_tag.rsplit(":", 1)[1] in str(caught.value)
        assert caught.value.error.extensions == {"_type": "IMAGE_NOT_FOUND"}


def test_bad_paths_get_the_path_error_classes(
    engine: RunningEngine, busybox_ref: str, tmp_path: Path
) -> None:
    async def main() -> None:
        config = dirk.Config(engine=engine.socket_url, workdir=tmp_path)
        async with dirk.Connection(config) as client:
            ctr = client.container().from_(busybox_ref)
            with pytest.raises(SnapshotPathError, match="/no/such/file") as in_container:
                await ctr.file("/no/such/file").contents()
            assert in_container.value.path[-1] == "contents"
            with pytest.raises(SnapshotPathError, match="it is a dir"):
                await ctr.file("/etc").contents()
            with pytest.raises(HostPathError, match="no-such-dir") as on_host:
                await ctr.with_directory("/src", client.host().directory("no-such-dir")).sync()
            assert isinstance(on_host.value, InvalidArgumentError)

    anyio.run(main)


def test_missing_command_is_an_exec_error_with_exit_code_1(
    engine: RunningEngine, busybox_ref: str, tmp_path: Path
) -> None:
    """Dagger's behaviour: a failed exec with exit code 1 and the lookup error on stderr; dirk's
    message also says what to do."""
    with dirk.Connection(dirk.Config(engine=engine.socket_url, workdir=tmp_path)) as client:
        ctr = client.container().from_(busybox_ref)
        with pytest.raises(ExecError) as caught:
            ctr.with_exec(["no-such-command", "--flag"]).stdout()
        error = caught.value
        assert isinstance(error, CommandNotFoundError)
        assert (error.exit_code, error.command) == (1, ["no-such-command", "--flag"])
        assert error.stderr == 'exec: "no-such-command": executable file not found in $PATH\n'
        message = str(error)
        assert 'process "no-such-command --flag" did not complete successfully' in message
        assert "exit code: 1" in message
        assert "executable file not found in $PATH (PATH=" in message
        assert "install it in an earlier step, fix the name, or set PATH" in message

        with pytest.raises(CommandNotFoundError) as by_path:
            ctr.with_exec(["/opt/none/tool"]).sync()
        assert by_path.value.exit_code == 1
        assert by_path.value.stderr == "fork/exec /opt/none/tool: no such file or directory\n"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize("scheme", ["http", "unix"])
def test_engine_address_where_nothing_listens_gets_client_connection_error(
    bare_env: pytest.MonkeyPatch, tmp_path: Path, scheme: str
) -> None:
    if scheme == "http":
        where = f"127.0.0.1:{_closed_port()}"
        bare_env.setenv("DIRK_ENGINE", f"http://{where}")
    else:
        where = str(tmp_path / "engine.sock")
        bare_env.setenv("DIRK_ENGINE", f"unix://{where}")
    started = time.monotonic()
    config = dirk.Config(workdir=tmp_path)
    with pytest.raises(ClientConnectionError) as caught, dirk.Connection(config) as client:
        client.version()
    assert time.monotonic() - started < QUICK_S
    assert where in str(caught.value)
    assert "DIRK_ENGINE" in str(caught.value)  # the fix: unset it or start that engine


def test_objects_used_after_the_connection_closed_fail_clearly(
    engine: RunningEngine, busybox_ref: str, tmp_path: Path
) -> None:
    with dirk.Connection(dirk.Config(engine=engine.socket_url, workdir=tmp_path)) as client:
        ctr = client.container().from_(busybox_ref).with_exec(["echo", "hi"])
        assert ctr.stdout() == "hi\n"
    with pytest.raises(ClientConnectionError, match="closed"):
        ctr.stdout()


#: A plain script whose pipeline runs for a minute: the user presses Ctrl-C during it.
LONG_PROGRAM = """
import sys
import dirk

with dirk.Connection(dirk.Config(engine=sys.argv[1])) as client:
    ctr = client.container().from_(sys.argv[2])
    ctr = ctr.with_exec(["sh", "-c", "sleep 60; echo " + sys.argv[3]])
    print("started", flush=True)
    ctr.stdout()
"""


def _command_running(text: str) -> bool:
    """Whether a process of this host has `text` in its command line."""
    needle = text.encode()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                    if needle in f.read().replace(b"\0", b" "):
                        return True
            except OSError:
                continue
    return False


def _wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {seconds:g} s", False)
        time.sleep(0.05)


def test_ctrl_c_ends_the_program_and_its_container_at_once(
    engine: RunningEngine, busybox_ref: str
) -> None:
    command = f"sleep 60; echo {uuid.uuid4().hex}"
    proc = subprocess.Popen(
        [sys.executable, "-c", LONG_PROGRAM, engine.socket_url, busybox_ref, command.split()[-1]],
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "started\n"
        _wait_for(lambda: _command_running(command), 20, "the container's command did not start")
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=QUICK_S)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGINT, stderr
    assert time.monotonic() - started < QUICK_S
    # The SDK's report replaces the KeyboardInterrupt traceback: what was stopped, and why.
    assert "interrupted (Ctrl-C)" in stderr and "Traceback" not in stderr, stderr
    assert command.split()[-1] in stderr, stderr  # the step that was running, by its command
    _wait_for(lambda: not _command_running(command), QUICK_S, "the engine kept the command running")
