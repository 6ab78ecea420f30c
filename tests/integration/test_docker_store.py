"""The host's container image store (a private Docker daemon): `exportImage` loads a dirk
image that `docker run` then runs, `host().containerImage` takes an image Docker made into a
pipeline, and bad input says what to fix."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from dirk.engine import EngineCore
from dirk.engine.sessions import Session
from tests.integration.docker_daemon import PrivateDockerd
from tests.integration.test_api_pipelines import Client

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


def client_of(engine: EngineCore, tmp_path: Path, docker_host: str) -> Client:
    session = Session("t", tmp_path, {}, time.time(), client_env={"DOCKER_HOST": docker_host})
    return Client(engine, tmp_path, session)


async def test_export_image_loads_it_into_docker(
    engine: EngineCore,
    dockerd: PrivateDockerd,
    busybox_ref: str,
    tmp_path: Path,
) -> None:
    client = client_of(engine, tmp_path, f"unix://{dockerd.socket}")
    name = f"dirk-test/app:{uuid.uuid4().hex[:8]}"
    await client.data(
        "query($image: String!, $name: String!) { container { from(address: $image) {"
        ' withNewFile(path: "/hello", contents: "from dirk\\n") {'
        ' withEnvVariable(name: "GREETING", value: "hi") { exportImage(name: $name) } } } } }',
        image=busybox_ref,
        name=name,
    )
    ran = dockerd.docker(
        "run", "--rm", "--network=none", name, "sh", "-c", "cat /hello; echo $GREETING"
    )
    assert ran.stdout == "from dirk\nhi\n"


async def test_container_image_takes_an_image_docker_made(
    engine: EngineCore,
    dockerd: PrivateDockerd,
    busybox_ref: str,
    tmp_path: Path,
) -> None:
    dockerd.docker("pull", busybox_ref)
    box = f"made-{uuid.uuid4().hex[:8]}"
    dockerd.docker(
        "run", "--name", box, "--network=none", busybox_ref, "sh", "-c", "echo by docker > /made"
    )
    dockerd.docker("commit", "--change", "ENV MADE=yes", box, f"{box}:1")
    dockerd.docker("rm", box)
    client = client_of(engine, tmp_path, f"unix://{dockerd.socket}")
    data = await client.data(
        "query($name: String!) { host { containerImage(name: $name) {"
        ' withExec(args: ["sh", "-c", "cat /made; echo $MADE"]) { stdout } } } }',
        name=f"{box}:1",
    )
    assert data["host"]["containerImage"]["withExec"]["stdout"] == "by docker\nyes\n"


async def test_bad_input_names_the_problem(
    engine: EngineCore,
    dockerd: PrivateDockerd,
    tmp_path: Path,
) -> None:
    client = client_of(engine, tmp_path, f"unix://{dockerd.socket}")
    missing = await client.run('{ host { containerImage(name: "no-such-image:9") { id } } }')
    assert missing.errors and "no image 'no-such-image:9'" in missing.errors[0].message
    tcp = client_of(engine, tmp_path, "tcp://127.0.0.1:2375")
    refused = await tcp.run('{ host { containerImage(name: "x") { id } } }')
    assert refused.errors and "is not a unix socket" in refused.errors[0].message
    gone = client_of(engine, tmp_path, f"unix://{tmp_path}/none.sock")
    absent = await gone.run('{ host { containerImage(name: "x") { id } } }')
    assert absent.errors and "no Docker daemon socket" in absent.errors[0].message
