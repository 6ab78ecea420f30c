"""Service values: the digest that names a service, the hostname derived from it, and what
a client's /etc/hosts gets; plus the instance bookkeeping of the `ServiceManager`
(sharing, refcounts, idle stop, start/stop, a session's end) over a stand-in start."""

from __future__ import annotations

import re
from contextlib import AsyncExitStack
from typing import Any

import anyio
import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dirk.solver.job import Job
from dirk.solver.ops import Exec, ImagePull, Ref, ServiceBinding, ServiceDef, ServicePort
from dirk.solver.services import (
    IDLE_GRACE_ENV,
    Endpoint,
    Instance,
    ServiceManager,
    hostname_of,
    service_digest,
)
from dirk.workers.executor.hostfiles import hosts_file

ROOT = Ref(ImagePull("busybox", "sha256:" + "ab" * 32, "linux/amd64"))
LABEL = re.compile(r"^[0-9a-v]{13}$")


def service(*args: str, port: int = 8080, hostname: str = "") -> ServiceDef:
    return ServiceDef(Exec(root=ROOT, args=args or ("httpd", "-f")), (ServicePort(port),), hostname)


def digest(svc: ServiceDef, root_key: str = "sha256:" + "11" * 32) -> str:
    return service_digest(svc, [root_key] * len(svc.inputs()))


@given(st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=5))
def test_digest_is_stable_and_covers_the_command(args: list[str]) -> None:
    one = service(*args)
    same = service(*args)
    assert digest(one) == digest(same)
    assert digest(one) != digest(service(*args, "extra"))
    assert LABEL.match(hostname_of(digest(one)))


@given(st.integers(min_value=1, max_value=65535))
def test_digest_covers_ports_and_inputs(port: int) -> None:
    base = service(port=port)
    other_port = service(port=port % 65535 + 1)
    assert digest(base) != digest(other_port)
    assert digest(base) != digest(base, root_key="sha256:" + "22" * 32)


def test_a_chosen_hostname_changes_the_digest_and_nested_services_count() -> None:
    plain = service()
    assert digest(plain) != digest(attrs.evolve(plain, hostname="db"))
    backend = service("backend")
    front = ServiceDef(
        Exec(root=ROOT, args=("front",), services=(ServiceBinding("b", backend),)),
        (ServicePort(80),),
    )
    other_backend = ServiceDef(
        Exec(root=ROOT, args=("front",), services=(ServiceBinding("b", service("x")),)),
        (ServicePort(80),),
    )
    assert len(front.inputs()) == 2  # the backend's root is an input of the front too
    assert digest(front) != digest(other_backend)


def test_hostname_is_a_dns_label_of_the_digest() -> None:
    assert hostname_of("sha256:" + "00" * 32) == "0000000000000"
    assert hostname_of("sha256:" + "ff" * 32) == "vvvvvvvvvvvvv"


def test_client_hosts_lines_name_alias_and_hostname_once() -> None:
    endpoint = Endpoint("web", "abc123", "10.89.1.2", "dk0")
    assert endpoint.hosts() == (("web", "10.89.1.2"), ("abc123", "10.89.1.2"))
    assert Endpoint("abc", "abc", "10.89.1.2", "dk0").hosts() == (("abc", "10.89.1.2"),)
    text = hosts_file("me", "10.89.0.9", [("web", "10.89.1.2"), ("web", "10.89.9.9")])
    assert text.endswith("10.89.0.9\tme\n10.89.1.2\tweb\n")


# --- the manager over a stand-in start ---------------------------------------------------------


class FakeContainer:
    def __init__(self, n: int) -> None:
        self.address = f"10.89.0.{n + 2}"
        self.veth = f"dkfake{n}"
        self.running = True
        self.signals: list[str] = []
        self.started = 0.0
        self._done = anyio.Event()

    async def wait(self) -> int:
        await self._done.wait()
        return 0

    async def kill(self) -> int:
        self.signals.append("KILL")
        self.running = False
        self._done.set()
        return 0

    async def stop(self, grace: float) -> int:
        self.signals.append("TERM")
        return await self.kill()


class FakeManager(ServiceManager):
    """The real bookkeeping; `_start` makes a stand-in container (or fails, when asked)."""

    def __init__(self) -> None:
        super().__init__(workers=None, solve_all=None, key_of=self._key)  # type: ignore[arg-type]
        self.started: list[FakeContainer] = []
        self.fail: Exception | None = None

    @staticmethod
    async def _key(ref: Ref) -> str:
        return "sha256:" + "33" * 32

    async def _start(self, instance: Instance, job: Job, inputs: Any, stack: AsyncExitStack) -> Any:
        await anyio.sleep(0.01)
        if self.fail is not None:
            raise self.fail
        container = FakeContainer(len(self.started))
        self.started.append(container)
        instance.container = container  # type: ignore[assignment]
        instance.ready.set()
        return container


pytestmark = pytest.mark.anyio

A = Job(session="a")
B = Job(session="b")


@pytest.fixture(autouse=True)
def short_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(IDLE_GRACE_ENV, "0.05")


async def test_concurrent_users_of_a_session_share_one_instance() -> None:
    manager = FakeManager()
    binding = (ServiceBinding("web", service()),)
    async with manager.serving():
        seen: list[str] = []

        async def client() -> None:
            async with manager.bound(A, binding) as endpoints:
                seen.append(endpoints[0].address)
                await anyio.sleep(0.05)

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(client)
        assert len(manager.started) == 1 and len(set(seen)) == 1
        [instance] = manager.instances()
        assert instance.users == 0
        with anyio.fail_after(2):
            while manager.instances():  # stopped after the idle grace
                await anyio.sleep(0.01)
        assert manager.started[0].signals == ["KILL"]


async def test_sessions_get_their_own_instances_and_their_end_kills_them() -> None:
    manager = FakeManager()
    svc = service()
    async with manager.serving():
        await manager.start(A, svc)
        await manager.start(B, svc)
        assert len(manager.started) == 2
        assert {i.session for i in manager.instances()} == {"a", "b"}
        await manager.end_session("a")
        assert [i.session for i in manager.instances()] == ["b"]
        assert not manager.started[0].running and manager.started[1].running


async def test_start_holds_until_stop_and_stop_is_graceful_unless_kill() -> None:
    manager = FakeManager()
    svc = service()
    async with manager.serving():
        await manager.start(A, svc)
        await manager.start(A, svc)  # held once
        async with manager.bound(A, (ServiceBinding("web", svc),)):
            pass
        await anyio.sleep(0.1)  # past the grace: still held
        assert len(manager.instances()) == 1 and len(manager.started) == 1
        assert await manager.stop(A, svc) is True
        assert manager.started[0].signals == ["TERM", "KILL"]
        assert manager.instances() == []
        assert await manager.stop(A, svc, kill=True) is False  # none runs
        await manager.start(A, svc)
        await manager.stop(A, svc, kill=True)
        assert manager.started[1].signals == ["KILL"]


async def test_a_failed_start_reaches_every_waiter_and_is_not_kept() -> None:
    manager = FakeManager()
    manager.fail = RuntimeError("no such port")
    binding = (ServiceBinding("web", service()),)
    async with manager.serving():
        failures: list[BaseException] = []

        async def client() -> None:
            try:
                async with manager.bound(A, binding):
                    pass
            except RuntimeError as exc:
                failures.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(client)
            tg.start_soon(client)
        assert len(failures) == 2 and manager.instances() == []
        manager.fail = None
        async with manager.bound(A, binding) as endpoints:  # a new try starts afresh
            assert endpoints[0].alias == "web"


async def test_engine_stop_kills_every_instance() -> None:
    manager = FakeManager()
    async with manager.serving():
        await manager.start(A, service())
        await manager.start(B, service("other"))
    assert all(not c.running for c in manager.started) and manager.instances() == []
