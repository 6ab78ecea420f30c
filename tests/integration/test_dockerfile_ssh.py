"""`dockerBuild(ssh:)` with a real `ssh-agent` on the host: `RUN --mount=type=ssh` gets the
agent's socket and SSH_AUTH_SOCK, and talks the agent protocol through it."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import dirk
from dirk.errors import QueryError
from tests.integration.sdk_engine import RunningEngine, foreground_engine
from tests.integration.test_dockerfile_build import write

pytestmark = [pytest.mark.integration]

PYTHON = "127.0.0.1:5000/python:3.11"

#: Asks the agent at $SSH_AUTH_SOCK for its identities (SSH_AGENTC_REQUEST_IDENTITIES = 11)
#: and prints the answer's type (12, SSH_AGENT_IDENTITIES_ANSWER), the socket and each key's
#: comment.
ASK_AGENT = """
import os, socket, struct
path = os.environ["SSH_AUTH_SOCK"]
s = socket.socket(socket.AF_UNIX)
s.connect(path)
s.sendall(struct.pack(">IB", 1, 11))
size = struct.unpack(">I", s.recv(4))[0]
body = b""
while len(body) < size:
    body += s.recv(size - len(body))
count, at, names = struct.unpack(">I", body[1:5])[0], 5, []
for _ in range(count):
    at += 4 + struct.unpack(">I", body[at : at + 4])[0]
    length = struct.unpack(">I", body[at : at + 4])[0]
    names.append(body[at + 4 : at + 4 + length].decode())
    at += 4 + length
print(body[0], path, *names)
"""

DOCKERFILE = f"""
FROM {PYTHON}
COPY ask_agent.py /
RUN --mount=type=ssh python /ask_agent.py > /default
RUN --mount=type=ssh,id=default,target=/agent.sock,required=true \\
    test -S /agent.sock && python /ask_agent.py > /custom
RUN --mount=type=ssh,id=other test -z "$SSH_AUTH_SOCK" && echo skipped > /optional
RUN test ! -e /run/buildkit/ssh_agent.0 && test -z "$SSH_AUTH_SOCK" && echo gone > /after
"""


@pytest.fixture(scope="module")
def engine() -> Iterator[RunningEngine]:
    yield from foreground_engine()


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """(socket path, key comment) of a host ssh-agent holding one fresh key."""
    assert shutil.which("ssh-agent"), "ssh-agent is missing: apt install openssh-client"
    sock = tmp_path / "agent.sock"
    proc = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert time.monotonic() < deadline, "ssh-agent did not make its socket"
            time.sleep(0.05)
        comment = f"dirk-{uuid.uuid4().hex[:8]}"
        key = tmp_path / "id_ed25519"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(key)],
            check=True,
        )
        subprocess.run(["ssh-add", "-q", str(key)], check=True, env={"SSH_AUTH_SOCK": str(sock)})
        yield sock, comment
    finally:
        proc.terminate()
        proc.wait(10)


def connect(engine: RunningEngine, workdir: Path) -> dirk.Connection:
    return dirk.Connection(dirk.Config(engine=engine.socket_url, workdir=workdir))


def test_run_mount_ssh_reaches_the_forwarded_agent(
    engine: RunningEngine, tmp_path: Path, agent: tuple[Path, str]
) -> None:
    sock, comment = agent
    write(tmp_path / "ctx", {"Dockerfile": DOCKERFILE, "ask_agent.py": ASK_AGENT})
    with connect(engine, tmp_path) as client:
        ctx = client.host().directory("ctx")
        built = ctx.docker_build(ssh=client.host().unix_socket(str(sock)))
        assert built.file("/default").contents() == f"12 /run/buildkit/ssh_agent.0 {comment}\n"
        assert built.file("/custom").contents() == f"12 /agent.sock {comment}\n"
        assert built.file("/optional").contents() == "skipped\n"
        assert built.file("/after").contents() == "gone\n"
        assert built.env_variable("SSH_AUTH_SOCK") is None


def test_ssh_mount_errors_name_the_fix(engine: RunningEngine, tmp_path: Path) -> None:
    write(
        tmp_path / "ctx",
        {
            "Dockerfile": f"FROM {PYTHON}\nRUN --mount=type=ssh,required=true true\n",
            "Dockerfile.optional": f"FROM {PYTHON}\nRUN --mount=type=ssh echo ok > /ok\n",
            "Dockerfile.mode": f"FROM {PYTHON}\nRUN --mount=type=ssh,mode=0666 true\n",
        },
    )
    with connect(engine, tmp_path) as client:
        ctx = client.host().directory("ctx")
        with pytest.raises(QueryError, match=r"line 2 \(RUN\): the SSH agent 'default' is req"):
            ctx.docker_build().sync()
        assert ctx.docker_build(dockerfile="Dockerfile.optional").file("/ok").contents() == ("ok\n")
        with pytest.raises(QueryError, match=r"type=ssh,mode= is not supported"):
            ctx.docker_build(dockerfile="Dockerfile.mode").sync()
