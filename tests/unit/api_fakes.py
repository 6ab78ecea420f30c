"""A stand-in solver for the API layer's unit tests: it records what the resolvers ask for and
answers with canned results, so tests can check which operations a chain builds."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import attrs
from graphql import ExecutionResult, GraphQLSchema, graphql

from dirk.api import RequestContext, build_schema
from dirk.errors import ExecError
from dirk.solver.job import EventSink, Job, discard_events
from dirk.solver.leases import Leases
from dirk.solver.ops import Exec, Op, Ref, ServiceDef
from dirk.solver.terminal import TerminalRequest, Terminals
from dirk.state.layout import StateLayout
from dirk.workers.hostaccess import HostUser
from dirk.workers.images.config import ImageConfig, ResolvedImage
from dirk.workers.images.reference import ImageReference

IMAGE_DIGEST = "sha256:" + "a" * 64


@attrs.define
class FakeOutcome:
    exit_code: int
    stdout: bytes
    stderr: bytes


@attrs.define
class FakeResult:
    key: str
    outputs: tuple[Any, ...]
    exec: FakeOutcome | None = None


@attrs.define
class FakeInfo:
    kind: str
    size: int


@attrs.define
class FakeSolver:
    config: ImageConfig = attrs.field(
        factory=lambda: ImageConfig(
            env=("PATH=/usr/bin:/bin", "LANG=C"), cmd=("sh",), workdir="/app", user="app"
        )
    )
    #: argv -> exit code of that exec (0 when absent)
    exit_codes: dict[tuple[str, ...], int] = attrs.Factory(dict)
    #: path -> content, for read_file/stat/list_dir whatever the snapshot
    files: dict[str, bytes] = attrs.Factory(dict)
    resolved: list[tuple[str, str]] = attrs.Factory(list)
    ran: list[Exec] = attrs.Factory(list)
    solved: list[Op] = attrs.Factory(list)
    #: (exec, request) of each `interactive` run (Container.terminal), in order
    terminals: list[tuple[Exec, TerminalRequest]] = attrs.Factory(list)
    #: (service, argv, request) of each `service_terminal` run (Service.terminal), in order
    service_terminals: list[tuple[ServiceDef, tuple[str, ...], TerminalRequest]] = attrs.Factory(
        list
    )
    #: The service manager the API hands the session's end to (never called here).
    services: object = None
    _memo: dict[Op, asyncio.Future[FakeResult]] = attrs.Factory(dict)
    leases: Leases = attrs.Factory(Leases)

    async def resolve_image(
        self, job: Job, reference: str, platform: str = "linux/amd64"
    ) -> ResolvedImage:
        self.resolved.append((reference, platform))
        return ResolvedImage(
            ImageReference.parse(reference),
            IMAGE_DIGEST,
            "sha256:" + "b" * 64,
            self.config,
            (),
            platform,
        )

    async def result(self, job: Job, op: Op) -> FakeResult:
        """Like the real solver, each distinct operation is computed once (`ran` lists the
        execs computed); `solved` lists every call."""
        self.solved.append(op)
        if op not in self._memo:
            self._memo[op] = asyncio.ensure_future(self._compute(op))
        return await asyncio.shield(self._memo[op])

    async def _compute(self, op: Op) -> FakeResult:
        await asyncio.sleep(0)
        if not isinstance(op, Exec):
            return FakeResult("key", ("snapshot",))
        self.ran.append(op)
        code = self.exit_codes.get(op.args, 0)
        stdout = ("ran " + " ".join(op.args) + "\n").encode()
        ok = {"SUCCESS": code == 0, "FAILURE": code != 0, "ANY": True}[op.expect]
        if not ok:
            raise ExecError(op.args, code, stdout.decode(), "boom\n")
        outputs = ("snapshot",) * (1 + len(op.output_mounts()))
        return FakeResult("key", outputs, FakeOutcome(code, stdout, b"err\n"))

    async def solve(self, job: Job, ref: Ref) -> Any:
        return (await self.result(job, ref.op)).outputs[ref.output]

    async def interactive(self, job: Job, op: Exec, request: TerminalRequest) -> int:
        self.terminals.append((op, request))
        return 0

    async def service_terminal(
        self, job: Job, service: ServiceDef, argv: Any, request: TerminalRequest
    ) -> int:
        self.service_terminals.append((service, tuple(argv), request))
        return 0

    async def solve_all(self, job: Job, refs: Any) -> list[Any]:
        return [await self.solve(job, ref) for ref in refs]

    async def read_file(self, job: Job, ref: Ref, path: str, limit: int | None = None) -> bytes:
        return self.files[path]

    async def list_dir(self, job: Job, ref: Ref, path: str) -> list[str]:
        prefix = path.rstrip("/") + "/"
        return sorted({p[len(prefix) :].split("/")[0] for p in self.files if p.startswith(prefix)})

    async def list_entries(self, job: Job, ref: Ref, path: str) -> list[tuple[str, str]]:
        entries = []
        for name in await self.list_dir(job, ref, path):
            info = await self.stat(job, ref, path.rstrip("/") + "/" + name)
            entries.append((name, info.kind if info is not None else "other"))
        return entries

    async def stat(self, job: Job, ref: Ref, path: str, *, follow: bool = False) -> FakeInfo | None:
        if path in self.files:
            return FakeInfo("file", len(self.files[path]))
        if any(p.startswith(path.rstrip("/") + "/") for p in self.files):
            return FakeInfo("dir", 4096)
        return None


@attrs.define
class FakeEngine:
    solver: FakeSolver = attrs.Factory(FakeSolver)
    layout: StateLayout = attrs.Factory(lambda: StateLayout(Path("/nonexistent/dirk-state")))
    telemetry: None = None


@attrs.define
class FakeSession:
    workdir: Path
    state: dict[str, Any] = attrs.Factory(dict)
    client_env: dict[str, str] = attrs.Factory(dict)
    token: str = "fake-session-token"
    events: EventSink = discard_events
    owner: HostUser = attrs.Factory(HostUser.engine)
    explain: bool = False
    terminals: Terminals | None = None
    engine_port: int = 0
    cleanups: list[Any] = attrs.Factory(list)

    def add_cleanup(self, cleanup: Any) -> None:
        self.cleanups.append(cleanup)


_SCHEMA: GraphQLSchema | None = None


def schema() -> GraphQLSchema:
    global _SCHEMA
    if _SCHEMA is None:
        _SCHEMA = build_schema()
    return _SCHEMA


@attrs.define
class Api:
    """One session against the fake solver."""

    workdir: Path
    engine: FakeEngine = attrs.Factory(FakeEngine)
    session: FakeSession = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.session = FakeSession(self.workdir)

    @property
    def solver(self) -> FakeSolver:
        return self.engine.solver

    async def run(self, query: str, **variables: Any) -> ExecutionResult:
        context = RequestContext(engine=self.engine, session=self.session)  # type: ignore[arg-type]
        return await graphql(schema(), query, variable_values=variables, context_value=context)

    async def data(self, query: str, **variables: Any) -> Any:
        result = await self.run(query, **variables)
        assert result.errors is None, result.errors
        return result.data

    def value(self, object_id: str) -> Any:
        """The value behind an ID (the table's handle), to inspect the operations built."""
        from dirk.api.table import SessionTable

        return SessionTable.of(self.session).load(object_id).value
