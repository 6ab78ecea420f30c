"""A fake engine for SDK unit tests: answers POST /query through httpx.MockTransport.

Every query is validated against dirk's schema (so the SDK's queries must be valid GraphQL for
it), recorded, and answered by walking its selection: leaf values come from `leaves` (field name
-> value or callable(args) -> value), object lists from `lists`, failures from `errors`.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import anyio
import httpx
import pytest
from graphql import (
    FieldNode,
    InlineFragmentNode,
    SelectionSetNode,
    build_schema,
    parse,
    validate,
    value_from_ast_untyped,
)

from dirk.progress import watch as watch_module
from dirk.progress.watch import Watch
from dirk.schema import load_sdl
from dirk.sdk import connection as connection_module
from dirk.sdk.provision import SessionInfo
from dirk.wire.client import EngineAddress

SCHEMA = build_schema(load_sdl())
TOKEN = "test-token"


class FakeEngine:
    def __init__(
        self,
        leaves: dict[str, Any] | None = None,
        lists: dict[str, list[dict[str, Any]]] | None = None,
        errors: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.leaves = leaves or {}
        self.lists = lists or {}
        self.errors = errors or {}
        self.queries: list[str] = []
        self.ids = 0
        #: Sessions opened (workdir, labels), "closed" when one ended, "transport closed" when a
        #: connection's HTTP client was closed.
        self.opened: list[Any] = []
        #: Seconds every answer (and opening a session) takes, like a long pipeline would.
        self.delay = 0.0
        self.open_delay = 0.0
        #: Event records a progress view of a session gets (replayed when it subscribes).
        self.events: list[dict[str, Any]] = []
        #: How many times a connection subscribed progress views.
        self.watched = 0
        #: Queries whose caller went away (cancelled) before the answer.
        self.abandoned = 0

    def transport(self) -> httpx.AsyncBaseTransport:
        fake = self

        class Transport(httpx.MockTransport):
            async def aclose(self) -> None:
                fake.opened.append("transport closed")

        return Transport(self.handle_slowly)

    async def handle_slowly(self, request: httpx.Request) -> httpx.Response:
        if self.delay:
            try:
                await anyio.sleep(self.delay)
            except anyio.get_cancelled_exc_class():
                self.abandoned += 1
                raise
        return self.handle(request)

    def handle(self, request: httpx.Request) -> httpx.Response:
        expected = "Basic " + base64.b64encode(f"{TOKEN}:".encode()).decode()
        if request.headers.get("authorization") != expected:
            return httpx.Response(
                401,
                headers={"WWW-Authenticate": 'Basic realm="dirk"'},
                json={"data": None, "errors": [{"message": "unknown session token"}]},
            )
        query = json.loads(request.content)["query"]
        self.queries.append(query)
        document = parse(query)
        problems = validate(SCHEMA, document)
        if problems:
            return httpx.Response(
                400, json={"data": None, "errors": [p.formatted for p in problems]}
            )
        operation = document.definitions[0]
        try:
            data = self._answer(operation.selection_set, [])  # type: ignore[attr-defined]
        except _Failure as failure:
            return httpx.Response(200, json={"data": None, "errors": [failure.error]})
        return httpx.Response(200, json={"data": data})

    def _answer(self, selection: SelectionSetNode, path: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for node in selection.selections:
            if isinstance(node, InlineFragmentNode):
                out.update(self._answer(node.selection_set, path))
                continue
            assert isinstance(node, FieldNode)
            name = node.name.value
            here = [*path, name]
            if name in self.errors:
                raise _Failure({**self.errors[name], "path": here})
            args = {a.name.value: value_from_ast_untyped(a.value) for a in node.arguments or ()}
            if node.selection_set is None:
                out[name] = self._leaf(name, args, here)
            elif name in self.lists:
                fields = [f.name.value for f in node.selection_set.selections]  # type: ignore[attr-defined]
                out[name] = [{f: item[f] for f in fields} for item in self.lists[name]]
            else:
                out[name] = self._answer(node.selection_set, here)
        return out

    def _leaf(self, name: str, args: dict[str, Any], path: list[str]) -> Any:
        if name in self.leaves:
            value = self.leaves[name]
            return value(args) if callable(value) else value
        if name in ("id", "sync"):
            self.ids += 1
            return f"id-{'.'.join(path[:-1])}-{self.ids}"
        raise AssertionError(f"the fake engine has no value for {'.'.join(path)}")


class _Failure(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        self.error = error


def use_fake_engine(monkeypatch: pytest.MonkeyPatch) -> FakeEngine:
    """A fake engine that every `dirk.Connection` of the test talks to."""
    fake = FakeEngine(
        leaves={"stdout": "hi\n", "exitCode": 0, "entries": ["a", "b"]},
        lists={"envVariables": [{"id": "ev-1", "name": "PATH", "value": "/bin"}]},
    )

    async def open_session(workdir: Any, labels: Any, **_: Any) -> SessionInfo:
        await anyio.sleep(fake.open_delay)
        fake.opened.append((workdir, labels))
        return SessionInfo(TOKEN, 1234, EngineAddress("http://fake-engine"), control=None)

    async def close_session(info: SessionInfo, attachment: object = None) -> None:
        await anyio.sleep(0)  # a request to the engine: cancellable like one
        fake.opened.append("closed")

    async def watch_events(address: Any, token: str, views: Any, **_: Any) -> Watch:
        fake.watched += 1
        watch = Watch(views)
        for record in fake.events:
            watch.on_record(record)
        return watch

    monkeypatch.setattr(watch_module, "watch_events", watch_events)
    monkeypatch.setattr(connection_module, "open_session", open_session)
    monkeypatch.setattr(connection_module, "close_session", close_session)
    monkeypatch.setattr(connection_module.Connection, "_http_transport", fake.transport())
    return fake
