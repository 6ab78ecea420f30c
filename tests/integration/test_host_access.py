"""A session has its owner's rights on the host's files, never the engine's (root's).

An engine that lets the group `nogroup` use its socket (`DIRK_SOCKET_GROUP`); an attacker
process running as uid 65534 (nobody) opens a session on it and, with raw HTTP and the
session's valid token, tries what the engine as root could do for it: read /etc/shadow, list
/root, read the engine's own admin token, export over a root-owned file, run a privileged
container. Each is refused; what nobody may do (read its own file, export into its own
directory) works, and what it exports belongs to it.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.auth_registry import PASSWORD, USER, AuthRegistry
from tests.integration.sdk_engine import (
    ENGINE_STOP_S,
    clean_env,
    log_tail,
    new_state_dir,
    remove_state,
    require_root,
    wait_until_serving,
)

pytestmark = [pytest.mark.integration]

NOBODY = 65534


@pytest.fixture(scope="module")
def engine(auth_registry: AuthRegistry) -> Iterator[dict[str, Any]]:
    require_root()
    state = new_state_dir()
    os.chmod(state.parent, 0o755)  # mkdtemp's 0700 would keep everyone from the socket
    log = state.parent / "engine.log"
    # The engine's own Docker config (root's) can log in to the private registry.
    docker = state.parent / "docker"
    docker.mkdir()
    login = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (docker / "config.json").write_text(
        json.dumps({"auths": {auth_registry.address: {"auth": login}}})
    )
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dirk", "engine"],
            env=clean_env(state, DIRK_SOCKET_GROUP=str(NOBODY), DOCKER_CONFIG=str(docker)),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        info = wait_until_serving(state, log, proc)
        yield {**info, "state": state, "log": log}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(ENGINE_STOP_S) == 0, log_tail(log)
        remove_state(state)


def _http_over_unix(path: str, body: bytes) -> dict[str, Any]:
    """POST /sessions over the unix socket with the standard library only (the caller may no
    longer read the venv's files once it dropped its privileges)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)
        request = (
            b"POST /sessions HTTP/1.1\r\nHost: dirk\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, payload = answer.partition(b"\r\n\r\n")
    if b" 200 " not in head.split(b"\r\n")[0]:
        raise RuntimeError(head.decode(errors="replace") + payload.decode(errors="replace"))
    result: dict[str, Any] = json.loads(payload)
    return result


def session_as(uid: int, gid: int, socket_path: str) -> str:
    """A session opened by a process running as uid:gid (forked, privileges dropped)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: becomes the attacker, then opens a session
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            token = _http_over_unix(socket_path, b'{"workdir": "/tmp"}')["token"]
            os.write(write_end, token.encode())
        except BaseException as exc:
            os.write(write_end, f"ERROR {exc!r}".encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        answer = pipe.read().decode()
    os.waitpid(pid, 0)
    assert not answer.startswith("ERROR"), answer
    return answer


def query(engine: dict[str, Any], token: str, text: str) -> dict[str, Any]:
    with httpx.Client(trust_env=False, timeout=120) as http:
        response = http.post(
            f"http://127.0.0.1:{engine['port']}/query", json={"query": text}, auth=(token, "")
        )
    result: dict[str, Any] = response.json()
    return result


def refused(answer: dict[str, Any]) -> str:
    assert answer.get("errors"), f"the engine did it: {answer}"
    return str(answer["errors"][0]["message"])


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory every user may reach (pytest's own tmp dirs are root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="dirk-hostaccess-", dir="/var/tmp"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def nobody(engine: dict[str, Any]) -> str:
    return session_as(NOBODY, NOBODY, engine["socket"])


def test_a_user_outside_the_socket_group_cannot_connect(engine: dict[str, Any]) -> None:
    with pytest.raises(AssertionError, match="Permission denied"):
        session_as(1234, 1234, engine["socket"])


def test_nobody_cannot_read_what_only_root_may(engine: dict[str, Any], nobody: str) -> None:
    message = refused(query(engine, nobody, '{ host { file(path: "/etc/shadow") { contents } } }'))
    assert "/etc/shadow" in message and "ermission denied" in message
    message = refused(query(engine, nobody, '{ host { directory(path: "/root") { entries } } }'))
    assert "/root" in message


def test_nobody_can_neither_list_nor_prune_the_engines_cache(
    engine: dict[str, Any], nobody: str
) -> None:
    for text in (
        "{ engine { localCache { entrySet { entries { description } } } } }",
        "{ engine { localCache { prune } } }",
    ):
        message = refused(query(engine, nobody, text))
        assert "only the engine's own user may" in message, message
        assert "uid 65534" in message


def test_nobody_cannot_read_the_engines_state(engine: dict[str, Any], nobody: str) -> None:
    path = Path(engine["state"]) / "engine.json"
    message = refused(
        query(engine, nobody, f'{{ host {{ file(path: "{path}") {{ contents }} }} }}')
    )
    assert engine["admin_token"] not in message
    assert "state directory" in message or "ermission denied" in message


def test_even_root_cannot_read_the_engines_state_through_the_api(
    engine: dict[str, Any],
) -> None:
    root = session_as(0, 0, engine["socket"])
    path = Path(engine["state"]) / "engine.json"
    text = f'{{ host {{ file(path: "{path}") {{ contents }} }} }}'
    message = refused(query(engine, root, text))
    assert "state directory" in message
    assert engine["admin_token"] not in json.dumps(query(engine, root, "{ version }"))


def test_nobody_reads_its_own_files_and_exports_as_itself(
    engine: dict[str, Any], nobody: str, shared_dir: Path
) -> None:
    own = shared_dir / "nobody"
    own.mkdir()
    os.chown(own, NOBODY, NOBODY)
    (own / "note.txt").write_text("mine\n")
    os.chown(own / "note.txt", NOBODY, NOBODY)
    os.chmod(own / "note.txt", 0o600)
    answer = query(
        engine, nobody, f'{{ host {{ file(path: "{own / "note.txt"}") {{ contents }} }} }}'
    )
    assert answer.get("data") == {"host": {"file": {"contents": "mine\n"}}}, answer

    export = (
        '{ container { withNewFile(path: "/out.txt", contents: "exported\\n") { '
        f'file(path: "/out.txt") {{ export(path: "{own / "out.txt"}") }} }} }} }}'
    )
    answer = query(engine, nobody, export)
    assert not answer.get("errors"), answer
    st = (own / "out.txt").stat()
    assert (st.st_uid, st.st_gid) == (NOBODY, NOBODY)
    assert (own / "out.txt").read_text() == "exported\n"


def test_nobody_cannot_export_over_roots_files(
    engine: dict[str, Any], nobody: str, shared_dir: Path
) -> None:
    victim = shared_dir / "victim.txt"
    victim.write_text("root's\n")
    export = (
        '{ container { withNewFile(path: "/x", contents: "pwned") { '
        f'file(path: "/x") {{ export(path: "{victim}") }} }} }} }}'
    )
    refused(query(engine, nobody, export))
    assert victim.read_text() == "root's\n"


def test_nobody_cannot_run_a_privileged_container(
    engine: dict[str, Any], nobody: str, registry: str
) -> None:
    text = (
        f'{{ container {{ from(address: "{registry}/busybox:latest") {{ '
        'withExec(args: ["id"], insecureRootCapabilities: true) { stdout } } } }'
    )
    message = refused(query(engine, nobody, text))
    assert "root" in message and "65534" in message


def test_nobody_cannot_forward_a_socket_it_may_not_use(
    engine: dict[str, Any], nobody: str, shared_dir: Path
) -> None:
    """The engine would forward the socket as root (into a container, to git's ssh): the
    session's owner must be allowed to connect to it first."""
    path = shared_dir / "root-only.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        os.chmod(path, 0o600)
        server.listen()
        text = f'{{ host {{ unixSocket(path: "{path}") {{ id }} }} }}'
        assert "ermission denied" in refused(query(engine, nobody, text))
        os.chown(path, NOBODY, NOBODY)
        answer = query(engine, nobody, text)
        assert not answer.get("errors"), answer


def test_nobody_pulls_with_its_own_registry_credentials_never_roots(
    engine: dict[str, Any], nobody: str, busybox_ref: str, auth_registry: AuthRegistry
) -> None:
    """The engine's (root's) Docker config logs in to the private registry; a root session
    may publish and pull there, but nobody's pulls use nobody's own (absent) credentials."""
    address = f"{auth_registry.address}/private/app:{os.getpid()}"
    root = _http_over_unix(engine["socket"], b'{"workdir": "/tmp"}')["token"]
    published = query(
        engine,
        root,
        f'{{ container {{ from(address: "{busybox_ref}") {{ publish(address: "{address}") }} }} }}',
    )
    assert "errors" not in published, published
    pulled = query(engine, root, f'{{ container {{ from(address: "{address}") {{ sync }} }} }}')
    assert "errors" not in pulled, pulled

    message = refused(
        query(engine, nobody, f'{{ container {{ from(address: "{address}") {{ sync }} }} }}')
    )
    assert "needs credentials" in message and auth_registry.address in message
