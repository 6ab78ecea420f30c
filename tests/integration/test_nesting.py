"""experimentalPrivilegedNesting: a command that uses the engine's API as its own session.

A real `dirk engine` daemon (it has a TCP port); the outer query and the nested one are raw
HTTP, as a Dagger SDK inside the container would send them. The nested command finds the
engine at 127.0.0.1:$DAGGER_SESSION_PORT in its own network namespace and authenticates with
$DAGGER_SESSION_TOKEN; without the flag it gets neither; the token never shows in its output.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.sdk_engine import RunningEngine, foreground_engine

pytestmark = [pytest.mark.integration]

#: Runs in python:3.11: asks the engine for a nested pipeline, prints its answer and the token.
NESTED_CLIENT = """
import base64, json, os, sys, urllib.request
port, token = os.environ["DAGGER_SESSION_PORT"], os.environ["DAGGER_SESSION_TOKEN"]
query = '{ container { from(address: "%s") { withExec(args: ["echo", "nested"]) { stdout } } } }'
request = urllib.request.Request(
    f"http://127.0.0.1:{port}/query",
    data=json.dumps({"query": query % sys.argv[1]}).encode(),
    headers={
        "Content-Type": "application/json",
        "Authorization": "Basic " + base64.b64encode(f"{token}:".encode()).decode(),
    },
)
with urllib.request.urlopen(request, timeout=120) as answer:
    data = json.loads(answer.read())
print("answer:", data["data"]["container"]["from"]["withExec"]["stdout"].strip())
print("token:", token)
print("run:", sys.argv[2])
"""

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
