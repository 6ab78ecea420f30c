"""The contract between the solver (a generic scheduler) and the handler of one operation.

A handler says two things about its operation: what its cache key covers (`key`) and how it
runs (`run`). The solver does everything else the same way for every operation: keys in
dependency order, the in-memory and persistent caches, sharing of identical work, inputs
solved before the step, the capacity limiter, events, and storing the result.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar, Generic, TypeVar

import attrs

from dirk.errors import SecretError
from dirk.solver.job import EventKind, Job, StepEvent, unknown_secret
from dirk.solver.keys import cache_key
from dirk.solver.ops import Op, Ref
from dirk.solver.results import Counters, OpResult
from dirk.workers.images.config import ResolvedImage
from dirk.workers.images.reference import ImageReference
from dirk.workers.snapshots.layers import Snapshot

if TYPE_CHECKING:
    from collections.abc import Callable

    from dirk.solver.images_out import ImagesOut
    from dirk.solver.services import ServiceManager
    from dirk.solver.sources import Sources
    from dirk.solver.volumes import CacheVolumes
    from dirk.state.blobs import BlobStore
    from dirk.workers.executor.executor import Executor
    from dirk.workers.images.store import ImageStore
    from dirk.workers.snapshots.layers import LayerStore
    from dirk.workers.snapshots.snapshotter import Snapshotter

OpT = TypeVar("OpT", bound=Op)


@attrs.define(eq=False)
class Workers:
    """The workers handlers run on, shared by every handler of one engine."""

    layers: LayerStore
    snapshotter: Snapshotter
    images: ImageStore
    executor: Executor
    volumes: CacheVolumes
    blobs: BlobStore
    counters: Counters = attrs.field(factory=Counters)
    #: Images resolved during this engine's life, by manifest digest (pulls need no re-resolve).
    resolved: dict[str, ResolvedImage] = attrs.field(factory=dict)
    #: Images out (tarballs, imports, publishing); set by the solver, which it solves through.
    images_out: ImagesOut = attrs.field(init=False)
    #: Git remotes and HTTP downloads (`solver.sources`); set by the solver.
    sources: Sources = attrs.field(init=False)
    #: Running services that execs bind (`solver.services`); set by the solver.
    services: ServiceManager = attrs.field(init=False)

    async def resolve_image(self, reference: str, platform: str) -> ResolvedImage:
        """Ask the registry what `reference` is now (tag -> digest, config); pulls no layers."""
        resolved = await self.images.resolve(reference, platform)
        self.resolved[resolved.manifest_digest] = resolved
        return resolved

    async def pinned_image(self, reference: str, digest: str, platform: str) -> ResolvedImage:
        """The image `digest` names, resolved once per engine."""
        resolved = self.resolved.get(digest)
        if resolved is None:
            pinned = ImageReference.parse(reference).with_digest(digest)
            resolved = await self.resolve_image(str(pinned), platform)
        return resolved


@attrs.frozen
class Key:
    """A cache key; `volatile` when it depends on host state read now (host files), so the
    solver remembers it for one solve only instead of for the engine's life."""

    digest: str
    volatile: bool = False


@attrs.frozen(eq=False)
class Step:
    """What `Handler.run` gets besides its operation: the key it runs under, its inputs'
    snapshots by `Ref`, and the jobs waiting for it (for secrets and events)."""

    key: str
    description: str
    inputs: Mapping[Ref, Snapshot]
    #: The jobs waiting for this step now, first come first (a shared step has several).
    jobs: Callable[[], Sequence[Job]]
    #: Sends an event to the engine's subscribers and to every waiting job's sink.
    emit_event: Callable[[StepEvent], None]

    def emit(self, kind: EventKind, data: bytes = b"") -> None:
        self.emit_event(StepEvent(kind, self.key, self.description, data))

    def secret(self, secret_id: str) -> bytes:
        """The plaintext of `secret_id` from the first waiting job's session that holds it."""
        last: SecretError | None = None
        for job in self.jobs():
            try:
                return job.secrets.plaintext(secret_id)
            except SecretError as exc:  # this session lacks it: try the next one
                last = exc
        raise last if last is not None else unknown_secret(secret_id)


class Handler(Generic[OpT]):
    """Keys and runs one type of operation. Subclasses document what their key covers."""

    #: Whether `run` takes a slot of the solver's capacity limiter (real work does; an empty
    #: result does not).
    limited: ClassVar[bool] = True
    #: Whether `explain_fields` reads the result: then why the step ran is said after it ran.
    fields_after_run: ClassVar[bool] = False

    def __init__(self, workers: Workers) -> None:
        self.workers = workers

    async def key(self, op: OpT, input_keys: Sequence[str]) -> Key:
        """The cache key of `op` given its inputs' keys in `op.inputs()` order. The default
        covers every field of the operation but provenance (see `keys.cache_key`)."""
        return Key(cache_key(op, input_keys))

    async def run(self, op: OpT, step: Step) -> OpResult:
        """Compute `op`'s outputs from `step.inputs`; raise a `DirkError` on failure."""
        raise NotImplementedError

    async def explain_fields(self, op: OpT, result: OpResult) -> Mapping[str, str] | None:
        """Fields beyond the operation's own that say what went into `result`, for telling a
        user later why the step ran again (`solver.explain`), e.g. a host directory's files
        by path. None by default: the operation's fields say it all."""
        return None
