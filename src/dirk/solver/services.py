"""Services: long-running containers that exec steps (and other services) bind by name.

A service is a value (`ops.ServiceDef`): a container definition and the ports it serves. Its
digest (`keys.cache_key` over the keys of its inputs, as any step's) names it, and its
hostname (unless set) is derived from the digest. The `ServiceManager` runs instances of
them, one per (session, digest): the first user starts it, later users join it, and it is
stopped when its last user is done (after `DIRK_SERVICE_IDLE_GRACE` seconds, so that the
next step of a chain finds it still up), at `stop()`, or when its session ends.

Starting an instance: its own bindings first (nested services), its inputs solved, its
root mounted read-write (what it writes is thrown away), then the container is started
detached (`Executor.detached`) with its hostname; it is healthy once every exposed TCP port
(not `skip_health`) accepts a connection from the engine. It fails with `ServiceExitedError`
if it exits first, or `ServiceStartError` after `DIRK_SERVICE_START_TIMEOUT` seconds (60 by
default); both name the service, its ports and the tail of its output.

Instances run as tasks of the manager's task group (`serving()`, entered by the solver), so
they outlive the step that started them and are killed when the engine stops. Instances are
per session: two sessions binding one service run two instances, and a container of one
session can neither resolve nor (the bridge's isolation pairs) reach another's.
"""

from __future__ import annotations

import base64
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, NoReturn

import anyio
import attrs
from anyio.abc import TaskGroup

from dirk.errors import (
    ServiceError,
    ServiceExitedError,
    ServiceStartError,
    exec_error_message,
)
from dirk.solver.exec_container import prepare_exec
from dirk.solver.job import Job
from dirk.solver.keys import cache_key
from dirk.solver.mounts import StepMounts
from dirk.solver.ops import AnyService, Ref, ServiceBinding, ServiceDef
from dirk.solver.tunnels import Forwarding, start_forwarding
from dirk.workers.executor.probe import tcp_accepts
from dirk.workers.executor.running import RunningContainer
from dirk.workers.snapshots.layers import Snapshot

if TYPE_CHECKING:
    from dirk.solver.handlers.base import Workers

log = logging.getLogger(__name__)

START_TIMEOUT_ENV = "DIRK_SERVICE_START_TIMEOUT"
IDLE_GRACE_ENV = "DIRK_SERVICE_IDLE_GRACE"
#: How long a service may take to become healthy, by default (Dagger has no bound).
DEFAULT_START_TIMEOUT = 60.0
#: How long an instance nobody uses stays up, by default: the next exec of a chain
#: (`with_exec(a).with_exec(b)`) starts within milliseconds of the previous one ending.
DEFAULT_IDLE_GRACE = 2.0
#: `stop(kill: false)`: how long SIGTERM has before SIGKILL.
STOP_GRACE = 10.0
#: Pause between two rounds of health probes.
PROBE_INTERVAL = 0.05
#: Lines of a failed service's output its error shows.
ERROR_TAIL_LINES = 30

SolveAll = Callable[[Job, Sequence[Ref]], Awaitable[list[Snapshot]]]
KeyOf = Callable[[Ref], Awaitable[str]]


def _seconds(env: str, default: float) -> float:
    raw = os.environ.get(env, "")
    try:
        value = float(raw) if raw else default
    except ValueError:
        log.warning("%s=%r is not a number of seconds; using %s", env, raw, default)
        return default
    return max(value, 0.0)


def hostname_of(digest: str) -> str:
    """The host name of a service whose digest is `digest` ("sha256:<hex>"): 13 characters
    of base32hex (lowercase), a valid DNS label, stable as the digest is."""
    raw = bytes.fromhex(digest.removeprefix("sha256:"))
    return base64.b32hexencode(raw).decode().lower()[:13]


def service_digest(service: AnyService, input_keys: Sequence[str]) -> str:
    """The digest naming `service`, given the keys of `service.inputs()` in order."""
    return cache_key(service, input_keys)


@attrs.frozen
class Endpoint:
    """One bound service as a client container sees it: the names it resolves (alias and
    hostname) to `address`, and the bridge port (`veth`) it may reach."""

    alias: str
    hostname: str
    address: str
    veth: str

    def hosts(self) -> tuple[tuple[str, str], ...]:
        """The client's /etc/hosts lines (name, address)."""
        names = dict.fromkeys(n for n in (self.alias, self.hostname) if n)
        return tuple((name, self.address) for name in names)


class Instance:
    """One running (or starting) service of one session."""

    def __init__(self, session: str, digest: str, hostname: str, service: AnyService) -> None:
        self.session = session
        self.digest = digest
        self.hostname = hostname
        self.service = service
        #: Clients using it now (each bound exec, each nested binding).
        self.users = 0
        #: Held by `Service.start()` until `stop()` or the session's end.
        self.held = False
        self.ready = anyio.Event()
        self.done = anyio.Event()
        self.error: BaseException | None = None
        self.container: RunningContainer | Forwarding | None = None
        self._stop = anyio.Event()
        self._kill = anyio.Event()
        #: The phase of the start under way: a stop before it is healthy cancels it.
        self._starting = anyio.CancelScope()
        self._idle: anyio.CancelScope | None = None

    @property
    def address(self) -> str:
        assert self.container is not None, "an instance has an address once ready"
        return self.container.address

    def endpoint(self, alias: str) -> Endpoint:
        assert self.container is not None
        return Endpoint(alias, self.hostname, self.container.address, self.container.veth)

    def phase(self) -> anyio.CancelScope:
        """A cancel scope for one phase of the start, cancelled by a stop (at once if one
        was asked for already)."""
        self._starting = anyio.CancelScope()
        if self.stopping:
            self._starting.cancel()
        return self._starting

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def request_stop(self, kill: bool) -> None:
        """Ask the instance to stop: gracefully (SIGTERM first), or with `kill` at once (a
        kill asked for during a graceful stop cuts it short)."""
        self._stop.set()
        if kill:
            self._kill.set()
        if not self.ready.is_set():
            self._starting.cancel()


class ServiceManager:
    """The instances of every session, started on demand and shared by digest."""

    def __init__(self, workers: Workers, solve_all: SolveAll, key_of: KeyOf) -> None:
        self._workers = workers
        self._solve_all = solve_all
        self._key_of = key_of
        self._tg: TaskGroup | None = None
        self._instances: dict[tuple[str, str], Instance] = {}

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[None]:
        """The task group instances run in; leaving it kills every instance and waits."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                yield
            finally:
                self._tg = None
                doomed = list(self._instances.values())
                for instance in doomed:
                    instance.request_stop(kill=True)
                with anyio.CancelScope(shield=True), anyio.move_on_after(STOP_GRACE):
                    for instance in doomed:
                        await instance.done.wait()
                tg.cancel_scope.cancel()

    # --- values ---------------------------------------------------------------------------

    async def digest(self, service: AnyService) -> str:
        """The digest naming `service` (its definition and its inputs' keys)."""
        keys = [await self._key_of(ref) for ref in service.inputs()]
        return service_digest(service, keys)

    async def hostname(self, service: AnyService) -> str:
        """The name clients of the session reach `service` by (besides their aliases)."""
        return service.hostname or hostname_of(await self.digest(service))

    def instances(self, session: str | None = None) -> list[Instance]:
        """The instances running or starting now (of one session, or of all)."""
        return [i for i in self._instances.values() if session is None or i.session == session]

    # --- use ------------------------------------------------------------------------------

    @asynccontextmanager
    async def bound(
        self,
        job: Job,
        bindings: Sequence[ServiceBinding],
        inputs: Mapping[Ref, Snapshot] | None = None,
    ) -> AsyncIterator[tuple[Endpoint, ...]]:
        """Every service of `bindings` running and healthy (started concurrently, or joined),
        held for `job`'s session until the block ends; yields what the client needs."""
        acquired: dict[int, Instance] = {}

        async def acquire(index: int, binding: ServiceBinding) -> None:
            acquired[index] = await self._acquire(job, binding.service, inputs)

        try:
            if len(bindings) == 1:
                await acquire(0, bindings[0])
            else:
                try:
                    async with anyio.create_task_group() as tg:
                        for index, binding in enumerate(bindings):
                            tg.start_soon(acquire, index, binding)
                except BaseExceptionGroup as group:
                    _raise_first(group)
            yield tuple(
                acquired[index].endpoint(binding.alias) for index, binding in enumerate(bindings)
            )
        finally:
            for instance in acquired.values():
                self._release(instance)

    @asynccontextmanager
    async def held(self, job: Job, service: AnyService) -> AsyncIterator[Instance]:
        """`service`'s instance for `job`'s session, running and healthy (started, or
        joined), held as a binding holds it until the block ends (`Service.terminal`)."""
        instance = await self._acquire(job, service, None)
        try:
            yield instance
        finally:
            self._release(instance)

    async def start(self, job: Job, service: AnyService) -> Instance:
        """Start `service` (or join its instance) and hold it for the session until `stop`."""
        instance = await self._acquire(job, service, None)
        if instance.held:
            self._release(instance)  # held already: one hold per session is enough
        else:
            instance.held = True
        return instance

    async def stop(self, job: Job, service: AnyService, kill: bool = False) -> bool:
        """Stop the session's instance of `service` now (SIGTERM, SIGKILL after a grace;
        `kill`: SIGKILL at once) and wait until it is gone. False if none ran."""
        instance = self._instances.get((job.session, await self.digest(service)))
        if instance is None:
            return False
        instance.request_stop(kill)
        with anyio.CancelScope(shield=True):
            await instance.done.wait()
        return True

    async def end_session(self, session: str) -> None:
        """Kill every instance of `session` and wait until they are gone (its end)."""
        doomed = self.instances(session)
        for instance in doomed:
            instance.request_stop(kill=True)
        with anyio.CancelScope(shield=True):
            for instance in doomed:
                await instance.done.wait()

    # --- instances -----------------------------------------------------------------------

    async def _acquire(
        self, job: Job, service: AnyService, inputs: Mapping[Ref, Snapshot] | None
    ) -> Instance:
        digest = await self.digest(service)
        key = (job.session, digest)
        instance = self._instances.get(key)
        if instance is not None and instance.stopping:
            # Stopping: wait until it is gone, then start afresh.
            with anyio.CancelScope(shield=True):
                await instance.done.wait()
            instance = self._instances.get(key)
        if instance is None:
            if self._tg is None:
                raise RuntimeError("the service manager is not serving: use `async with`")
            hostname = service.hostname or hostname_of(digest)
            instance = Instance(job.session, digest, hostname, service)
            self._instances[key] = instance
            self._tg.start_soon(self._run, instance, job, inputs)
        instance.users += 1
        if instance._idle is not None:
            instance._idle.cancel()  # in use again: no idle stop
            instance._idle = None
        try:
            await instance.ready.wait()
        except BaseException:
            self._release(instance)
            raise
        if instance.error is not None:
            self._release(instance)
            raise instance.error
        if instance.done.is_set():
            self._release(instance)
            raise ServiceError(f"service {instance.hostname} stopped while starting")
        return instance

    def _release(self, instance: Instance) -> None:
        instance.users -= 1
        if instance.users > 0 or instance.held or instance.done.is_set():
            return
        grace = _seconds(IDLE_GRACE_ENV, DEFAULT_IDLE_GRACE)
        if grace == 0 or self._tg is None or not instance.ready.is_set():
            instance.request_stop(kill=True)
            return
        scope = instance._idle = anyio.CancelScope()

        async def idle_stop() -> None:
            with scope:
                await anyio.sleep(grace)
                if instance.users == 0 and not instance.held:
                    instance.request_stop(kill=True)

        self._tg.start_soon(idle_stop)

    async def _run(
        self, instance: Instance, job: Job, inputs: Mapping[Ref, Snapshot] | None
    ) -> None:
        """An instance's whole life: start, health wait, serve until asked to stop."""
        try:
            async with AsyncExitStack() as stack:
                container = await self._start(instance, job, inputs, stack)
                if container is None or not instance.ready.is_set():
                    raise ServiceError(f"{_describe(instance)} was stopped before it was healthy")
                log.info(
                    "service %s (%s) up at %s after %.2f s",
                    instance.hostname,
                    _command(instance),
                    container.address,
                    time.monotonic() - container.started,
                )
                async with anyio.create_task_group() as tg:

                    async def until_exit() -> None:
                        await container.wait()
                        tg.cancel_scope.cancel()

                    tg.start_soon(until_exit)
                    await instance._stop.wait()
                    tg.cancel_scope.cancel()
                if container.running and not instance._kill.is_set():
                    with anyio.move_on_after(STOP_GRACE):
                        async with anyio.create_task_group() as tg:

                            async def graceful() -> None:
                                await container.stop(STOP_GRACE)
                                tg.cancel_scope.cancel()

                            tg.start_soon(graceful)
                            await instance._kill.wait()
                            tg.cancel_scope.cancel()
                if container.running:
                    await container.kill()
        except BaseException as exc:
            if not instance.ready.is_set():
                instance.error = (
                    exc
                    if isinstance(exc, Exception)
                    else ServiceError(
                        f"service {instance.hostname} was stopped before it was healthy"
                    )
                )
            if not isinstance(exc, Exception):
                raise
            if instance.ready.is_set():
                log.warning("service %s failed: %s", instance.hostname, exc)
        finally:
            if self._instances.get((instance.session, instance.digest)) is instance:
                del self._instances[(instance.session, instance.digest)]
            instance.ready.set()
            instance.done.set()

    async def _start(
        self,
        instance: Instance,
        job: Job,
        inputs: Mapping[Ref, Snapshot] | None,
        stack: AsyncExitStack,
    ) -> RunningContainer | Forwarding | None:
        """Start the instance's container (its resources on `stack`) and wait until it is
        healthy; sets `ready` then. None when a stop came first. (What is entered on `stack`
        inside a phase's cancel scope holds no scope of its own across its block.)"""
        service = instance.service
        if not isinstance(service, ServiceDef):  # a forwarder between host and containers
            forwarding = await start_forwarding(
                self._workers.executor, self.bound, instance, job, stack
            )
            if forwarding is not None:
                instance.container = forwarding
                instance.ready.set()
            return forwarding
        with instance.phase() as phase:
            endpoints = await stack.enter_async_context(
                self.bound(job, service.exec.services, inputs)
            )
            refs = service.inputs()
            known = inputs or {}
            missing = [ref for ref in dict.fromkeys(refs) if ref not in known]
            solved = dict(zip(missing, await self._solve_all(job, missing), strict=True))
            snapshots = {ref: known[ref] if ref in known else solved[ref] for ref in refs}
            prepared = await prepare_exec(
                self._workers,
                stack,
                StepMounts(self._workers.snapshotter, stack),
                service.exec,
                snapshots,
                job.secrets.plaintext,
                hostname=instance.hostname,
                endpoints=endpoints,
                session_access=job.session_access,
            )
        if phase.cancelled_caught:
            return None
        container = await stack.enter_async_context(
            self._workers.executor.detached(prepared.root.merged, prepared.spec)
        )
        instance.container = container
        self._workers.counters.services_started += 1
        with instance.phase() as phase:
            await self._wait_healthy(instance, container, prepared.secrets.scrubber.scrub)
            instance.ready.set()
        return None if phase.cancelled_caught else container

    async def _wait_healthy(
        self,
        instance: Instance,
        container: RunningContainer,
        scrub: Callable[[bytes], bytes],
    ) -> None:
        """Return once every checked TCP port accepts a connection; raise when the
        container exits first or the start timeout passes."""
        ports = [
            p.port for p in instance.service.ports if p.protocol == "TCP" and not p.skip_health
        ]
        timeout = _seconds(START_TIMEOUT_ENV, DEFAULT_START_TIMEOUT)
        pending = list(dict.fromkeys(ports))
        with anyio.move_on_after(timeout) as waited:
            async with anyio.create_task_group() as tg:

                async def watch_exit() -> None:
                    await container.wait()
                    tg.cancel_scope.cancel()

                async def probe() -> None:
                    while pending:
                        pending[:] = [
                            port
                            for port in pending
                            if not await tcp_accepts(container.address, port)
                        ]
                        if pending:
                            await anyio.sleep(PROBE_INTERVAL)
                    tg.cancel_scope.cancel()

                tg.start_soon(watch_exit)
                tg.start_soon(probe)
        if not container.running and (pending or not ports):
            raise _exited(instance, container, scrub)
        if waited.cancelled_caught and pending:
            raise _unhealthy(instance, container, scrub, pending, timeout)


def _describe(instance: Instance) -> str:
    ports = ", ".join(f"{p.port}/{p.protocol.lower()}" for p in instance.service.ports)
    return f"service {instance.hostname} ({_command(instance)}; ports: {ports or 'none exposed'})"


def _command(instance: Instance) -> str:
    service = instance.service
    return " ".join(service.exec.args) if isinstance(service, ServiceDef) else service.describe()


def _tail(container: RunningContainer, scrub: Callable[[bytes], bytes]) -> str:
    text = scrub(container.output_tail()).decode("utf-8", errors="replace")
    lines = text.rstrip("\n").splitlines()[-ERROR_TAIL_LINES:]
    if not lines:
        return "it wrote no output"
    return "its output ended with:\n" + "\n".join("  " + line for line in lines)


def _exited(
    instance: Instance, container: RunningContainer, scrub: Callable[[bytes], bytes]
) -> ServiceExitedError:
    code = container.exit_code if container.exit_code is not None else -1
    assert isinstance(instance.service, ServiceDef)
    args = list(instance.service.exec.args)
    why = f": {container.runtime_error}" if container.runtime_error else ""
    message = (
        f"{_describe(instance)} exited before it was healthy: "
        f"{exec_error_message(args, code)}{why}; {_tail(container, scrub)}\n"
        "Check that its command runs in the foreground (a server that daemonizes exits at "
        "once) and that it does not fail at start (its output above says why)"
    )
    output = scrub(container.output_tail()).decode("utf-8", errors="replace")
    return ServiceExitedError(args, code, output, "", message)


def _unhealthy(
    instance: Instance,
    container: RunningContainer,
    scrub: Callable[[bytes], bytes],
    pending: Sequence[int],
    timeout: float,
) -> ServiceStartError:
    closed = ", ".join(f"{port}/tcp" for port in pending)
    return ServiceStartError(
        f"{_describe(instance)} was not healthy within {timeout:g} s: port(s) {closed} of "
        f"{container.address} did not accept a connection; {_tail(container, scrub)}\n"
        "Check that it listens on those ports on all addresses (0.0.0.0, not 127.0.0.1), "
        "that withExposedPort names the ports it really serves (or set "
        "experimentalSkipHealthcheck for a port it opens later), or give it longer with "
        f"{START_TIMEOUT_ENV}=<seconds>"
    )


def _raise_first(group: BaseExceptionGroup[BaseException]) -> NoReturn:
    """Raise the first error of a task group that is not a cancellation, as itself."""
    cancelled = anyio.get_cancelled_exc_class()
    stack: list[BaseException] = [group]
    first: BaseException | None = None
    while stack:
        exc = stack.pop(0)
        if isinstance(exc, BaseExceptionGroup):
            stack[:0] = list(exc.exceptions)
        elif first is None or (isinstance(first, cancelled) and not isinstance(exc, cancelled)):
            first = exc
    assert first is not None
    raise first
