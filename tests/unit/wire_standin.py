"""A small stand-in schema and app for the wire server's unit tests (no engine behind it)."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import graphql
from aiohttp import web

from dirk.engine.daemon import Components, serve
from dirk.engine.sessions import Session, SessionRegistry
from dirk.errors import ExecError, InvalidArgumentError, SolveError
from dirk.wire.server import WireServer

ADMIN_TOKEN = "admin-secret"
VERSION = "9.9.9-test"

SDL = """
type Query {
  version: String!
  echo(text: String!, times: Int = 1): String!
  workdir: String!
  failExec(code: Int!, stdoutBytes: Int = 0, stderrBytes: Int = 0): String!
  boom: String
  stepBug: String
  groupFail(exec: Boolean!): String
  sleep(seconds: Float!): Float!
  deprecatedArg(old: String @deprecated(reason: "use new"), new: String): String
}
"""


class Probe:
    """Counts the `sleep` resolvers running at once."""

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0
        self.cancelled = 0


def standin_schema(probe: Probe | None = None) -> graphql.GraphQLSchema:
    schema = graphql.build_schema(SDL)
    fields = schema.query_type.fields  # type: ignore[union-attr]
    probe = probe or Probe()

    async def sleep(_: Any, info: graphql.GraphQLResolveInfo, seconds: float) -> float:
        probe.running += 1
        probe.peak = max(probe.peak, probe.running)
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            probe.cancelled += 1
            raise
        finally:
            probe.running -= 1
        return seconds

    def fail_exec(
        _: Any, info: graphql.GraphQLResolveInfo, code: int, stdoutBytes: int, stderrBytes: int
    ) -> str:
        raise ExecError(
            ["sh", "-c", "false"],
            code,
            "o" * (stdoutBytes - 3) + "END" if stdoutBytes else "",
            "e" * stderrBytes,
        )

    def group_fail(_: Any, info: graphql.GraphQLResolveInfo, exec: bool) -> str:
        inner: Exception = (
            ExecError(["make"], 1, "built half", "no rule")
            if exec
            else InvalidArgumentError("path 'x' is outside the workdir")
        )
        raise ExceptionGroup("unhandled errors in a TaskGroup", [inner])

    def boom(_: Any, info: graphql.GraphQLResolveInfo) -> str:
        raise ZeroDivisionError("the resolver divided by zero")

    def step_bug(_: Any, info: graphql.GraphQLResolveInfo) -> str:
        try:
            {}["missing"]
        except KeyError as bug:
            raise SolveError("exec make", bug) from bug
        return ""

    def workdir(_: Any, info: graphql.GraphQLResolveInfo) -> str:
        session: Session = info.context["session"]
        return str(session.workdir)

    fields["version"].resolve = lambda _, info: VERSION
    fields["echo"].resolve = lambda _, info, text, times: text * times
    fields["workdir"].resolve = workdir
    fields["failExec"].resolve = fail_exec
    fields["boom"].resolve = boom
    fields["stepBug"].resolve = step_bug
    fields["groupFail"].resolve = group_fail
    fields["sleep"].resolve = sleep
    fields["deprecatedArg"].resolve = lambda _, info, **kw: kw.get("new") or kw.get("old")
    return schema


def standin_server(probe: Probe | None = None) -> WireServer:
    return WireServer(
        standin_schema(probe),
        SessionRegistry(),
        context_factory=lambda session: {"session": session},
        admin_token=ADMIN_TOKEN,
        version=VERSION,
        port=4242,
    )


def standin_app(server: WireServer) -> web.Application:
    return server.app()


def basic(token: str) -> dict[str, str]:
    """The Authorization header the Dagger SDKs send: the token as user, empty password."""
    return {"Authorization": "Basic " + base64.b64encode(f"{token}:".encode()).decode()}


class FakeEngine:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.events: list[str] = []

    async def start(self) -> None:
        self.events.append("start")

    async def aclose(self) -> None:
        self.events.append("aclose")


class Daemon:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.engines: list[FakeEngine] = []
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def components(self) -> Components:
        def make_engine(root: Path) -> FakeEngine:
            self.engines.append(FakeEngine(root))
            return self.engines[-1]

        return Components(
            make_engine=make_engine,
            build_schema=standin_schema,
            make_context=lambda engine, session: {"session": session, "engine": engine},
        )

    async def start(self, port: int = 0, *, own_process: bool = False) -> dict[str, Any]:
        self.task = asyncio.create_task(
            serve(
                self.root,
                port,
                components=self.components(),
                stop=self.stop,
                own_process=own_process,
            )
        )
        info = self.root / "engine.json"
        for _ in range(500):
            if info.exists():
                return dict(json.loads(info.read_text()))
            if self.task.done():
                self.task.result()
            await asyncio.sleep(0.01)
        raise AssertionError("engine.json never appeared")

    async def aclose(self) -> None:
        self.stop.set()
        if self.task is not None and not self.task.done():
            await self.task
