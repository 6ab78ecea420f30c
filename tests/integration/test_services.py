"""Services end to end through the API layer: busybox httpd services bound by busybox clients,
on a real engine (containers, bridge, isolation pairs), queried as the wire server does."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from dirk.engine import EngineCore
from dirk.engine.sessions import SessionRegistry
from dirk.errors import ServiceExitedError, ServiceStartError
from dirk.solver.services import IDLE_GRACE_ENV, START_TIMEOUT_ENV
from dirk.wire.errors import format_error
from dirk.workers.executor import network
from tests.integration.schema_client import SchemaClient

pytestmark = [pytest.mark.integration, pytest.mark.anyio, pytest.mark.usefixtures("no_leaks")]

#: A web root whose index is a token made when the service starts: one per instance.
HTTPD = (
    "mkdir -p /www && cat /proc/sys/kernel/random/uuid > /www/index.html && "
    "echo serving-now && exec httpd -f -p 8080 -h /www"
)


class Client(SchemaClient):
    """One session, querying the schema the way the wire server does."""

    async def service(self, image: str, script: str = HTTPD, port: int = 8080) -> dict[str, str]:
        """A service running `script` in `image` with `port` exposed: its id and hostname."""
        data = await self.data(
            "query($image: String!, $script: String!, $port: Int!) { container {"
            " from(address: $image) { withExposedPort(port: $port) {"
            ' asService(args: ["sh", "-c", $script]) { id hostname } } } } }',
            image=image,
            script=script,
            port=port,
        )
        svc: dict[str, str] = data["container"]["from"]["withExposedPort"]["asService"]
        return svc

    async def bound_stdout(
        self, image: str, service_id: str, script: str, alias: str = "web", nonce: str = ""
    ) -> str:
        """stdout of `script` in a container bound to the service as `alias`."""
        data = await self.data(
            "query($image: String!, $svc: ID!, $alias: String!, $script: String!, $n: String!) {"
            ' container { from(address: $image) { withEnvVariable(name: "NONCE", value: $n) {'
            " withServiceBinding(alias: $alias, service: $svc) {"
            ' withExec(args: ["sh", "-c", $script]) { stdout } } } } } }',
            image=image,
            svc=service_id,
            alias=alias,
            script=script,
            n=nonce or str(time.time_ns()),
        )
        out: str = data["container"]["from"]["withEnvVariable"]["withServiceBinding"]["withExec"][
            "stdout"
        ]
        return out


@pytest.fixture(autouse=True)
def short_grace() -> Iterator[None]:
    """Instances nobody uses stop after 0.2 s (the default 2 s only slows the tests)."""
    old = os.environ.get(IDLE_GRACE_ENV)
    os.environ[IDLE_GRACE_ENV] = "0.2"
    yield
    if old is None:
        os.environ.pop(IDLE_GRACE_ENV, None)
    else:
        os.environ[IDLE_GRACE_ENV] = old


@pytest.fixture
def sessions() -> SessionRegistry:
    return SessionRegistry()


@pytest.fixture
def client(engine: EngineCore, sessions: SessionRegistry, tmp_path: Path) -> Client:
    return Client(engine, sessions.create(tmp_path, {}))


def running_containers(engine: EngineCore) -> list[str]:
    """Container ids in the engine's runtime state (a running or unreaped container)."""
    roots = engine.layout.run / "runtime"
    return [c.name for r in roots.iterdir() if r.is_dir() for c in r.iterdir() if c.is_dir()]


def processes_with(text: str) -> list[int]:
    """Pids of live processes whose command line contains `text`."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cmdline = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if text.encode() in cmdline and str(os.getpid()) != entry.name:
            found.append(int(entry.name))
    return found


def pairs() -> list[list[str]]:
    """The bridge isolation pairs now (each a [from port, to port])."""
    out = os.popen(f"nft -j list set bridge {network.ISOLATION_TABLE} {network.ISOLATION_SET}")
    listing = json.loads(out.read() or "{}")
    result = []
    for entry in listing.get("nftables", []):
        for element in (entry.get("set") or {}).get("elem", []):
            result.append([str(n) for n in element["concat"]])
    return result


async def wait_for(condition: Any, timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.05)


async def test_client_reaches_service_by_alias_and_hostname(
    client: Client, busybox_ref: str
) -> None:
    svc = await client.service(busybox_ref)
    out = await client.bound_stdout(
        busybox_ref,
        svc["id"],
        f"wget -qO- http://web:8080/; echo; wget -qO- http://{svc['hostname']}:8080/",
    )
    first, second = out.split()
    assert first == second and len(first) == 36  # one instance's token, by both names
    assert client.engine.solver.counters.services_started == 1


async def test_hostname_is_stable_and_with_hostname_overrides(
    client: Client, busybox_ref: str
) -> None:
    one = await client.service(busybox_ref)
    again = await client.service(busybox_ref, script=HTTPD)
    other = await client.service(busybox_ref, script=HTTPD + " ")
    assert one["hostname"] == again["hostname"] != other["hostname"]
    data = await client.data(
        'query($id: ID!) { loadServiceFromID(id: $id) { withHostname(hostname: "db.local") {'
        ' hostname endpoint(scheme: "http") ports { port protocol } } } }',
        id=one["id"],
    )
    named = data["loadServiceFromID"]["withHostname"]
    assert named == {
        "hostname": "db.local",
        "endpoint": "http://db.local:8080",
        "ports": [{"port": 8080, "protocol": "TCP"}],
    }
    out = await client.bound_stdout(
        busybox_ref, await service_id_with_hostname(client, one["id"]), "wget -qO- db.local:8080"
    )
    assert len(out.strip()) == 36


async def service_id_with_hostname(client: Client, service_id: str) -> str:
    data = await client.data(
        'query($id: ID!) { loadServiceFromID(id: $id) { withHostname(hostname: "db.local") {'
        " id } } }",
        id=service_id,
    )
    return str(data["loadServiceFromID"]["withHostname"]["id"])


async def test_three_concurrent_clients_share_one_instance(
    client: Client, busybox_ref: str
) -> None:
    """Dagger regression dagger/dagger#6951: a service bound by several containers at once
    keeps working for all of them."""
    svc = await client.service(busybox_ref)
    script = "for i in 1 2 3 4 5; do wget -qO- http://web:8080/ || exit 1; sleep 0.2; done"
    outs = await asyncio.gather(
        *(client.bound_stdout(busybox_ref, svc["id"], script, nonce=f"c{i}") for i in range(3))
    )
    tokens = {line for out in outs for line in out.split()}
    assert len(tokens) == 1, outs  # every request of every client: one instance
    assert all(len(out.split()) == 5 for out in outs)
    assert client.engine.solver.counters.services_started == 1


async def test_service_never_healthy_fails_within_timeout_with_its_output(
    client: Client, busybox_ref: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(START_TIMEOUT_ENV, "3")
    svc = await client.service(busybox_ref, script="echo booting-slowly; sleep 600")
    started = time.monotonic()
    result = await client.run(
        "query($svc: ID!, $image: String!) { container { from(address: $image) {"
        ' withServiceBinding(alias: "web", service: $svc) {'
        ' withExec(args: ["true"]) { stdout } } } } }',
        svc=svc["id"],
        image=busybox_ref,
    )
    elapsed = time.monotonic() - started
    assert result.errors
    error = result.errors[0].original_error
    assert isinstance(error, ServiceStartError) and not isinstance(error, ServiceExitedError)
    message = str(error)
    assert svc["hostname"] in message and "8080/tcp" in message
    assert "booting-slowly" in message and "within 3 s" in message
    assert START_TIMEOUT_ENV in message
    assert 3 <= elapsed < 8
    assert format_error(result.errors[0])["extensions"]["_type"] == "SERVICE_START_FAILED"
    await wait_for(lambda: not processes_with("booting-slowly"))
    assert not client.engine.solver.services.instances()


async def test_service_that_exits_fails_fast_with_its_output(
    client: Client, busybox_ref: str
) -> None:
    svc = await client.service(busybox_ref, script="echo bad-config-line >&2; exit 3")
    started = time.monotonic()
    result = await client.run(
        "query($svc: ID!, $image: String!) { container { from(address: $image) {"
        ' withServiceBinding(alias: "web", service: $svc) {'
        ' withExec(args: ["true"]) { stdout } } } } }',
        svc=svc["id"],
        image=busybox_ref,
    )
    assert time.monotonic() - started < 3
    assert result.errors
    error = result.errors[0].original_error
    assert isinstance(error, ServiceExitedError)
    assert error.exit_code == 3 and "bad-config-line" in error.stdout
    assert "bad-config-line" in str(error) and svc["hostname"] in str(error)
    extensions = format_error(result.errors[0])["extensions"]
    assert extensions["_type"] == "EXEC_ERROR" and extensions["subtype"] == "SERVICE_EXITED"
    assert extensions["exitCode"] == 3


async def test_start_holds_the_service_until_stop(client: Client, busybox_ref: str) -> None:
    svc = await client.service(busybox_ref, script=HTTPD.replace("/www", "/srv-startstop"))
    await client.data("query($id: ID!) { loadServiceFromID(id: $id) { start } }", id=svc["id"])
    manager = client.engine.solver.services
    [instance] = manager.instances()
    assert instance.container is not None and instance.container.running
    first = await client.bound_stdout(busybox_ref, svc["id"], "wget -qO- http://web:8080/")
    await anyio.sleep(0.5)  # past the idle grace: start() holds it
    second = await client.bound_stdout(busybox_ref, svc["id"], "wget -qO- http://web:8080/")
    assert first == second  # the same instance served both
    assert manager.instances() == [instance]
    await client.data(
        "query($id: ID!) { loadServiceFromID(id: $id) { stop(kill: true) } }", id=svc["id"]
    )
    assert manager.instances() == [] and not instance.container.running
    assert not processes_with("/srv-startstop")
    # Started again: a new instance (a new token).
    await client.data("query($id: ID!) { loadServiceFromID(id: $id) { start } }", id=svc["id"])
    third = await client.bound_stdout(busybox_ref, svc["id"], "wget -qO- http://web:8080/")
    assert third != first
    started = time.monotonic()
    await client.data("query($id: ID!) { loadServiceFromID(id: $id) { stop } }", id=svc["id"])
    # httpd runs as PID 1 without a SIGTERM handler (the kernel would drop the signal):
    # killed at once rather than after the 10 s grace.
    assert time.monotonic() - started < 5
    assert manager.instances() == []


async def test_cached_client_step_does_not_start_the_service(
    engine: EngineCore, sessions: SessionRegistry, tmp_path: Path, busybox_ref: str
) -> None:
    first_session = Client(engine, sessions.create(tmp_path, {}))
    svc = await first_session.service(busybox_ref)
    token = await first_session.bound_stdout(
        busybox_ref, svc["id"], "wget -qO- http://web:8080/", nonce="same"
    )
    await sessions.end(first_session.session.token)
    assert engine.solver.counters.services_started == 1
    second_session = Client(engine, sessions.create(tmp_path, {}))
    svc2 = await second_session.service(busybox_ref)
    again = await second_session.bound_stdout(
        busybox_ref, svc2["id"], "wget -qO- http://web:8080/", nonce="same"
    )
    assert again == token  # the cached output of the first instance
    assert engine.solver.counters.services_started == 1  # no second instance
    assert engine.solver.services.instances() == []


async def test_unbound_containers_cannot_reach_a_service(
    engine: EngineCore, sessions: SessionRegistry, tmp_path: Path, busybox_ref: str
) -> None:
    owner = Client(engine, sessions.create(tmp_path, {}))
    svc = await owner.service(busybox_ref)
    await owner.data("query($id: ID!) { loadServiceFromID(id: $id) { start } }", id=svc["id"])
    [instance] = engine.solver.services.instances()
    address = instance.address
    # (busybox wget -T crashes here: `timeout` bounds a dropped connection instead)
    probe = f"timeout 3 wget -qO- http://{address}:8080/ && echo reached || echo blocked"
    bound = await owner.bound_stdout(busybox_ref, svc["id"], probe)
    assert bound.split()[-1] == "reached"
    unbound = await owner.data(
        "query($image: String!, $script: String!) { container { from(address: $image) {"
        ' withExec(args: ["sh", "-c", $script]) { stdout } } } }',
        image=busybox_ref,
        script=probe,
    )
    assert unbound["container"]["from"]["withExec"]["stdout"].strip() == "blocked"
    # Another session resolves neither the hostname nor reaches the address.
    other = Client(engine, sessions.create(tmp_path, {}))
    script = (
        f"timeout 3 wget -qO- http://{svc['hostname']}:8080/ && echo by-name || echo no-name; "
        f"timeout 3 wget -qO- http://{address}:8080/ && echo by-address || echo no-address"
    )
    out = await other.data(
        "query($image: String!, $script: String!) { container { from(address: $image) {"
        ' withExec(args: ["sh", "-c", $script]) { stdout } } } }',
        image=busybox_ref,
        script=script,
    )
    assert out["container"]["from"]["withExec"]["stdout"].split() == ["no-name", "no-address"]
    await sessions.end(owner.session.token)
    assert engine.solver.services.instances() == []
    veth = instance.container.veth if instance.container else ""
    assert not any(veth in pair for pair in pairs())


async def test_service_binds_its_own_service(client: Client, busybox_ref: str) -> None:
    backend = await client.service(busybox_ref)
    data = await client.data(
        "query($image: String!, $svc: ID!, $script: String!) { container {"
        ' from(address: $image) { withServiceBinding(alias: "backend", service: $svc) {'
        ' withExposedPort(port: 9090) { asService(args: ["sh", "-c", $script]) { id } } } } } }',
        image=busybox_ref,
        svc=backend["id"],
        script=(
            "mkdir -p /www && wget -qO /www/index.html http://backend:8080/ && "
            "exec httpd -f -p 9090 -h /www"
        ),
    )
    front = data["container"]["from"]["withServiceBinding"]["withExposedPort"]["asService"]
    out = await client.bound_stdout(
        busybox_ref, front["id"], "wget -qO- http://front:9090/", alias="front"
    )
    assert len(out.strip()) == 36  # the backend's token, through the front service
    assert client.engine.solver.counters.services_started == 2


async def test_cancelled_client_and_ended_session_leave_nothing(
    engine: EngineCore, sessions: SessionRegistry, tmp_path: Path, busybox_ref: str
) -> None:
    client = Client(engine, sessions.create(tmp_path, {}))
    svc = await client.service(busybox_ref, script=HTTPD.replace("/www", "/srv-leak"))
    task = asyncio.ensure_future(
        client.bound_stdout(busybox_ref, svc["id"], "wget -qO- http://web:8080/; sleep 600")
    )
    manager = engine.solver.services
    await wait_for(lambda: manager.instances() and manager.instances()[0].ready.is_set())
    [instance] = manager.instances()
    assert instance.container is not None
    veth = instance.container.veth
    await wait_for(lambda: any(veth in pair for pair in pairs()))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The client is gone; the instance stops after the idle grace.
    await wait_for(lambda: not manager.instances())
    assert not processes_with("/srv-leak")
    # (The namespace pool's thread removes the namespace; the kernel then frees the veth.)
    await wait_for(lambda: not Path("/sys/class/net", veth).exists())
    assert not any(veth in pair for pair in pairs())
    # A session ending mid-step: its instance is killed at once.
    task = asyncio.ensure_future(
        client.bound_stdout(busybox_ref, svc["id"], "wget -qO- http://web:8080/; sleep 600")
    )
    await wait_for(lambda: manager.instances() and manager.instances()[0].ready.is_set())
    client.session.track(task)
    await sessions.end(client.session.token)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not manager.instances()
    assert not processes_with("/srv-leak")
    await wait_for(lambda: not running_containers(engine))
    assert not [
        m
        for m in Path("/proc/self/mounts").read_text().splitlines()
        if str(engine.layout.run / "m") in m
    ]


async def test_a_new_engine_removes_the_bridge_pairs_a_killed_one_left(tmp_path: Path) -> None:
    """Pairs of a SIGKILLed engine (its sentinel died too, say) go at the next start."""
    from dirk.state.layout import StateLayout
    from dirk.workers.executor.executor import engine_tag

    state = tmp_path / "state"
    tag = engine_tag(StateLayout(state))
    stale = (f"dk{tag}dead1", f"dk{tag}dead2")
    network.allow_peers(stale[0], [stale[1]])
    network.allow_peers("dkzzother1", ["dkzzother2"])  # another engine's: kept
    try:
        assert [stale[0], stale[1]] in pairs()
        async with EngineCore(state):
            current = pairs()
            assert not any(name in pair for pair in current for name in stale)
            assert ["dkzzother1", "dkzzother2"] in current
    finally:
        network.forbid_peers(stale[0], [stale[1]])
        network.forbid_peers("dkzzother1", ["dkzzother2"])
