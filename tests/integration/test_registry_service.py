"""`publish(registryService:)` and `from(registryService:)`: an image pushed to and pulled from
a registry that runs as a service of the session (the registry:2 test image: Debian's
docker-registry on :5000, plain HTTP), by a name only the service makes reachable. A real
`dirk engine` daemon, driven through the SDK as a user's program would.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

import dirk
from dirk.errors import DirkError
from tests.integration.sdk_engine import RunningEngine, foreground_engine

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def engine() -> Iterator[RunningEngine]:
    yield from foreground_engine()


@pytest.fixture
def client(engine: RunningEngine, tmp_path: Path) -> Iterator[dirk.Client[dirk.Sync]]:
    with dirk.Connection(dirk.Config(engine=engine.socket_url, workdir=tmp_path)) as client:
        yield client


def registry(client: dirk.Client[dirk.Sync], image: str) -> dirk.Service[dirk.Sync]:
    """A registry service, held for the session: its storage lives as long as its container."""
    service = (
        client.container().from_(image).with_exposed_port(5000).as_service().with_hostname("myreg")
    )
    service.start()
    return service


def test_an_image_published_to_a_registry_service_is_pulled_back_from_it(
    client: dirk.Client[dirk.Sync], busybox_ref: str, registry_image_ref: str
) -> None:
    run = secrets.token_hex(6)
    service = registry(client, registry_image_ref)
    image = (
        client.container()
        .from_(busybox_ref)
        .with_new_file("/marker", f"pushed {run}")
        .with_env_variable("RUN", run)
    )
    address = image.publish("myreg:5000/app:1", registry_service=service)
    assert address.startswith("myreg:5000/app:1@sha256:")
    for reference in ("myreg:5000/app:1", address, "myreg.local/app:1"):  # no port: its 5000
        pulled = client.container().from_(reference, registry_service=service)
        assert pulled.with_exec(["cat", "/marker"]).stdout() == f"pushed {run}"
        assert pulled.env_variable("RUN") == run


def test_without_the_service_the_registry_name_names_nothing(
    client: dirk.Client[dirk.Sync],
) -> None:
    with pytest.raises(DirkError, match="myreg"):
        client.container().from_("myreg:5000/app:1").sync()


def test_a_fresh_engine_pulls_the_layers_through_a_host_service_as_registry(
    client: dirk.Client[dirk.Sync], busybox_ref: str, registry_image_ref: str, tmp_path: Path
) -> None:
    """Engine A runs the registry (a container service) and tunnels it to the host; engine B,
    with an empty store, reaches it through a Host.service given as registryService, so its
    pull step downloads every layer through that service."""
    run = secrets.token_hex(6)
    service = registry(client, registry_image_ref)
    image = client.container().from_(busybox_ref).with_new_file("/marker", f"fresh {run}")
    image.publish("myreg:5000/fresh:1", registry_service=service)
    tunnel = client.host().tunnel(service, ports=[dirk.PortForward(backend=5000)])
    port = int(tunnel.endpoint().rpartition(":")[2])
    engines = foreground_engine()
    other_engine = next(engines)
    try:
        config = dirk.Config(engine=other_engine.socket_url, workdir=tmp_path)
        with dirk.Connection(config) as other:
            forward = other.host().service([dirk.PortForward(frontend=5000, backend=port)])
            pulled = other.container().from_("myreg:5000/fresh:1", registry_service=forward)
            assert pulled.with_exec(["cat", "/marker"]).stdout() == f"fresh {run}"
    finally:
        engines.close()
