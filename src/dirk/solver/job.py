"""The job: what one request brings to every solve besides the operation itself.

The solver shares work between requests by cache key, but some things belong to the request:
the session it runs for, the secrets that session holds, and where its progress goes. A `Job`
carries them into `Solver.result(job, op)` and everything that calls it.

Cancelling a job is cancelling the anyio scope (or task) its solve runs in: the solver then
stops waiting for it, and shared work stops only when the last job waiting for it has left.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Literal, Protocol

import attrs

from dirk.errors import UnknownSecretError
from dirk.workers.hostaccess import HostAccess, HostUser
from dirk.workers.images.auth import DockerConfig

if TYPE_CHECKING:
    from dirk.solver.leases import Lease
    from dirk.solver.terminal import Terminals

EventKind = Literal[
    "queued", "start", "cached", "done", "error", "cancelled", "stdout", "stderr", "explain"
]


@attrs.frozen
class StepEvent:
    """What the solver reports as it goes, for progress views and logs: a step waits for its
    inputs (queued), started, was found cached, finished, failed (`data`: the message), was
    cancelled (nobody waits for it any more), or wrote a chunk of output (`data`); "explain"
    says why a step missed the cache (`data`: the reason, for jobs that asked, see
    `solver.explain`).

    `inputs` are the keys of the steps it takes as inputs (on queued, start and cached), so a
    view can draw the DAG; `duration` is the run's seconds on done, and on cached the seconds
    its cached result took when it ran (0 when unknown); `at` is the wall-clock time."""

    kind: EventKind
    key: str
    description: str
    data: bytes = b""
    duration: float = 0.0
    inputs: tuple[str, ...] = ()
    at: float = attrs.field(factory=time.time)


#: Receives StepEvents; called on the event loop, so it must return quickly and not raise.
EventSink = Callable[[StepEvent], None]


def discard_events(event: StepEvent) -> None:
    """The sink of a job nobody watches."""


class SecretSource(Protocol):
    """Where a step gets the plaintext of a secret by its id (secret values never enter an
    operation or a cache key, only ids do). The API's is the session's `SecretStore`."""

    def plaintext(self, secret_id: str) -> bytes:
        """The value of `secret_id`; raises a `SecretError` naming it when this source does
        not hold it (`UnknownSecretError` here)."""
        ...


def unknown_secret(secret_id: str) -> UnknownSecretError:
    return UnknownSecretError(
        f"secret {secret_id!r} is not known to this session: create it with setSecret "
        "(or the SDK's set_secret) in the session that uses it"
    )


@attrs.frozen
class NoSecrets:
    """The secret source of a session that holds none."""

    def plaintext(self, secret_id: str) -> bytes:
        raise unknown_secret(secret_id)


@attrs.frozen
class SecretValues:
    """Secrets held in memory, by id."""

    values: Mapping[str, bytes] = attrs.field(factory=dict)

    def plaintext(self, secret_id: str) -> bytes:
        try:
            return self.values[secret_id]
        except KeyError:
            raise unknown_secret(secret_id) from None


NO_SECRETS = NoSecrets()


@attrs.frozen
class SessionAccess:
    """How a command given experimentalPrivilegedNesting reaches the engine as its job's
    session: the engine's TCP port and the session's token (a secret: never in a repr)."""

    port: int
    token: str = attrs.field(repr=False)


@attrs.frozen(eq=False)
class Job:
    """One request's view of the solver: its session (a short name, for logs and progress),
    its secrets and its event sink. Compared by identity: two requests are two jobs."""

    session: str = ""
    secrets: SecretSource = NO_SECRETS
    events: EventSink = discard_events
    #: Whose rights the job's reads and writes of host files have (its session owner's).
    host: HostAccess = attrs.field(factory=lambda: HostAccess.for_user(HostUser.engine()))
    #: Whether steps that miss the cache say why ("explain" events; `dirk run --explain`).
    explain: bool = False
    #: Reads the Docker config whose registry credentials this job's pulls and pushes use
    #: (its session owner's); None for the engine's own.
    docker_config: Callable[[], Awaitable[DockerConfig]] | None = None

    async def registry_credentials(self) -> DockerConfig | None:
        """The Docker config to use for this job's registry calls (None: the engine's)."""
        return None if self.docker_config is None else await self.docker_config()

    #: The terminal the session's client holds, if any (`Container.terminal`, `dirk run -i`).
    terminals: Terminals | None = None
    #: How nested commands reach the engine as this job's session (None: the engine serves
    #: no TCP port, e.g. in-process).
    session_access: SessionAccess | None = None
    #: What the job's session uses, kept from the garbage collector while it lives
    #: (None: the solver's background lease, never released).
    lease: Lease | None = None

    def emit(self, event: StepEvent) -> None:
        self.events(event)


#: The job of callers that belong to no session (benchmarks, tests, tools).
BACKGROUND = Job(session="background")
