"""experimentalPrivilegedNesting: a command that uses the engine's API as its own session.

A real `dirk engine` daemon (it has a TCP port); the outer query and the nested one are raw
HTTP, as a Dagger SDK inside the container would send them. The nested command finds the
engine at 127.0.0.1:$DAGGER_SESSION_PORT in its own network namespace and authenticates with
$DAGGER_SESSION_TOKEN; without the flag it gets neither; the token never shows in its output.
A service (`asService`, `Container.up`) given the flag reaches the engine the same way.
(Terminals given it: tests/integration/test_terminal.py.)
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest

from tests.integration.sdk_engine import RunningEngine, foreground_engine

pytestmark = [pytest.mark.integration]

#: Python run in a container with nesting: asks the engine, as the session it was given, for
#: a nested pipeline (`echo nested-<argv[2]>` in the image `argv[1]`); `data` is the answer.
NESTED_ASK = """
import base64, json, os, pathlib, sys, urllib.request
port, token = os.environ["DAGGER_SESSION_PORT"], os.environ["DAGGER_SESSION_TOKEN"]
query = '{ container { from(address: "%s") { withExec(args: ["echo", "nested-%s"]) { stdout } } } }'
request = urllib.request.Request(
    f"http://127.0.0.1:{port}/query",
    data=json.dumps({"query": query % (sys.argv[1], sys.argv[2])}).encode(),
    headers={
        "Content-Type": "application/json",
        "Authorization": "Basic " + base64.b64encode(f"{token}:".encode()).decode(),
    },
)
with urllib.request.urlopen(request, timeout=120) as answer:
    data = json.loads(answer.read())
"""

#: Runs in python:3.11: asks the engine for a nested pipeline, prints its answer and the token.
NESTED_CLIENT = (
    NESTED_ASK
    + """
print("answer:", data["data"]["container"]["from"]["withExec"]["stdout"].strip())
print("token:", token)
print("run:", sys.argv[2])
"""
)

#: Runs in python:3.11 without the flag: what it sees of the variables and of the port.
PLAIN_CLIENT = """
import os, socket, sys
print("port var:", os.environ.get("DAGGER_SESSION_PORT", "absent"))
print("token var:", os.environ.get("DAGGER_SESSION_TOKEN", "absent"))
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5).close()
    print("loopback: open")
except OSError as exc:
    print("loopback: closed", type(exc).__name__)
print("run:", sys.argv[2])
"""

EXEC_QUERY = """
query($image: String!, $args: [String!]!, $nesting: Boolean!) {
  container { from(address: $image) {
    withExec(args: $args, experimentalPrivilegedNesting: $nesting) { stdout }
  } }
}
"""


@pytest.fixture(scope="module")
def engine() -> Iterator[RunningEngine]:
    yield from foreground_engine()


def new_session(engine: RunningEngine) -> str:
    transport = httpx.HTTPTransport(uds=str(engine.info["socket"]))
    with httpx.Client(transport=transport, trust_env=False, timeout=10) as http:
        response = http.post("http://dirk/sessions", json={"workdir": "/tmp"})
        response.raise_for_status()
        return str(response.json()["token"])


def end_session(engine: RunningEngine, token: str) -> None:
    transport = httpx.HTTPTransport(uds=str(engine.info["socket"]))
    with httpx.Client(transport=transport, trust_env=False, timeout=30) as http:
        http.delete(f"http://dirk/sessions/{token}")


def run_exec(
    engine: RunningEngine, token: str, image: str, args: list[str], nesting: bool
) -> dict[str, Any]:
    with httpx.Client(trust_env=False, timeout=600) as http:
        response = http.post(
            f"http://127.0.0.1:{engine.port}/query",
            json={
                "query": EXEC_QUERY,
                "variables": {"image": image, "args": args, "nesting": nesting},
            },
            auth=(token, ""),
        )
        answer: dict[str, Any] = response.json()
        return answer


def stdout_of(answer: dict[str, Any]) -> str:
    assert not answer.get("errors"), answer
    return str(answer["data"]["container"]["from"]["withExec"]["stdout"])


def test_a_nested_command_runs_a_pipeline_as_its_session_and_its_token_is_masked(
    engine: RunningEngine, python_ref: str, busybox_ref: str
) -> None:
    token = new_session(engine)
    try:
        run = secrets.token_hex(8)
        args = ["python", "-c", NESTED_CLIENT, busybox_ref, run]
        out = stdout_of(run_exec(engine, token, python_ref, args, nesting=True))
    finally:
        end_session(engine, token)
    assert "answer: nested" in out
    assert f"run: {run}" in out
    assert "token: ***" in out
    assert token not in out
    assert token not in engine.log.read_text(errors="replace")


def test_without_the_flag_the_command_gets_no_session_and_no_engine_port(
    engine: RunningEngine, python_ref: str
) -> None:
    token = new_session(engine)
    try:
        run = secrets.token_hex(8)
        args = ["python", "-c", PLAIN_CLIENT, str(engine.port), run]
        out = stdout_of(run_exec(engine, token, python_ref, args, nesting=False))
    finally:
        end_session(engine, token)
    assert f"run: {run}" in out
    assert "port var: absent" in out
    assert "token var: absent" in out
    assert "loopback: closed ConnectionRefusedError" in out


#: Runs in python:3.11 as a service: a nested pipeline's answer, then served on port 8080.
NESTED_SERVER = (
    NESTED_ASK
    + """
www = pathlib.Path("/www")
www.mkdir()
(www / "index.html").write_text(data["data"]["container"]["from"]["withExec"]["stdout"])
os.execvp("python", ["python", "-m", "http.server", "8080", "-d", "/www"])
"""
)

SERVICE_QUERY = """
query($image: String!, $args: [String!]!) {
  container { from(address: $image) { withExposedPort(port: 8080) {
    asService(args: $args, experimentalPrivilegedNesting: true) { id }
  } } }
}
"""

CLIENT_QUERY = """
query($image: String!, $service: ID!) {
  container { from(address: $image) { withServiceBinding(alias: "nested", service: $service) {
    withExec(args: ["wget", "-qO-", "http://nested:8080/"]) { stdout }
  } } }
}
"""

UP_QUERY = """
query($image: String!, $args: [String!]!, $port: Int!) {
  container { from(address: $image) { withExposedPort(port: 8080) {
    up(ports: [{frontend: $port, backend: 8080}], args: $args,
       experimentalPrivilegedNesting: true)
  } } }
}
"""


def query(engine: RunningEngine, token: str, text: str, **variables: Any) -> dict[str, Any]:
    with httpx.Client(trust_env=False, timeout=600) as http:
        response = http.post(
            f"http://127.0.0.1:{engine.port}/query",
            json={"query": text, "variables": variables},
            auth=(token, ""),
        )
        answer: dict[str, Any] = response.json()
        assert not answer.get("errors"), answer
        return answer["data"]


def test_a_service_given_the_flag_runs_a_nested_pipeline_as_its_session(
    engine: RunningEngine, python_ref: str, busybox_ref: str
) -> None:
    token = new_session(engine)
    try:
        run = secrets.token_hex(8)
        args = ["python", "-c", NESTED_SERVER, busybox_ref, run]
        data = query(engine, token, SERVICE_QUERY, image=python_ref, args=args)
        service = data["container"]["from"]["withExposedPort"]["asService"]["id"]
        data = query(engine, token, CLIENT_QUERY, image=busybox_ref, service=service)
    finally:
        end_session(engine, token)
    stdout = data["container"]["from"]["withServiceBinding"]["withExec"]["stdout"]
    assert stdout.strip() == f"nested-{run}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_container_up_given_the_flag_serves_what_its_nested_pipeline_made(
    engine: RunningEngine, python_ref: str, busybox_ref: str
) -> None:
    token = new_session(engine)
    run = secrets.token_hex(8)
    port = _free_port()
    args = ["python", "-c", NESTED_SERVER, busybox_ref, run]
    served: list[str] = []

    async def main() -> None:
        async with (
            httpx.AsyncClient(trust_env=False, timeout=600) as http,
            anyio.create_task_group() as tg,
        ):

            async def up() -> None:
                await http.post(
                    f"http://127.0.0.1:{engine.port}/query",
                    json={
                        "query": UP_QUERY,
                        "variables": {"image": python_ref, "args": args, "port": port},
                    },
                    auth=(token, ""),
                )

            tg.start_soon(up)
            with anyio.fail_after(300):
                while not served:
                    try:
                        answer = await http.get(f"http://127.0.0.1:{port}/", timeout=30)
                        served.append(answer.text)
                    except httpx.TransportError:
                        await anyio.sleep(0.2)
            tg.cancel_scope.cancel()  # the client goes: the engine cancels the query

    try:
        anyio.run(main)
    finally:
        end_session(engine, token)
    assert served == [f"nested-{run}\n"]
