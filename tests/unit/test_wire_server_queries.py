"""The wire server answers GraphQL requests the way the official Dagger SDKs expect."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import graphql
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from dirk.wire.server import WireServer

from .wire_standin import VERSION, Probe, basic, standin_server

pytestmark = pytest.mark.anyio

Client = TestClient[web.Request, web.Application]


@pytest.fixture
def probe() -> Probe:
    return Probe()


@pytest.fixture
def server(probe: Probe) -> WireServer:
    return standin_server(probe)


@pytest.fixture
async def client(
    server: WireServer,
) -> AsyncIterator[Client]:
    async with TestClient(TestServer(server.app())) as c:
        yield c


@pytest.fixture
def auth(server: WireServer) -> dict[str, str]:
    session = server.sessions.create(Path("/work/project"), {"dagger.io/sdk.name": "python"})
    return basic(session.token)


async def post(
    client: Client, auth: dict[str, str] | None, body: object
) -> tuple[int, dict[str, Any]]:
    resp = await client.post("/query", json=body, headers=auth)
    assert resp.content_type == "application/json"
    return resp.status, await resp.json()


async def test_health_needs_no_credentials(client: Client) -> None:
    resp = await client.get("/health")
    assert resp.status == 200
    assert await resp.json() == {"version": VERSION}


async def test_query_with_session_token_as_basic_user(client: Client, auth: dict[str, str]) -> None:
    status, body = await post(client, auth, {"query": '{ echo(text: "ab", times: 2) }'})
    assert status == 200
    assert body == {"data": {"echo": "abab"}}


async def test_schema_defaults_and_variables_and_operation_name(
    client: Client, auth: dict[str, str]
) -> None:
    query = 'query A { echo(text: "x") } query B($t: String!) { echo(text: $t, times: 3) }'
    _, a = await post(client, auth, {"query": query, "operationName": "A"})
    _, b = await post(client, auth, {"query": query, "operationName": "B", "variables": {"t": "y"}})
    assert a == {"data": {"echo": "x"}}
    assert b == {"data": {"echo": "yyy"}}


async def test_session_workdir_reaches_resolvers(client: Client, auth: dict[str, str]) -> None:
    _, body = await post(client, auth, {"query": "{ workdir }"})
    assert body == {"data": {"workdir": "/work/project"}}


@pytest.mark.parametrize("token", [None, "not-a-session"], ids=["no-credentials", "unknown-token"])
async def test_query_without_valid_token_is_401_with_json(
    client: Client, token: str | None
) -> None:
    resp = await client.post(
        "/query", json={"query": "{ version }"}, headers=basic(token) if token else None
    )
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == 'Basic realm="dirk"'
    body = await resp.json()
    assert body["data"] is None
    assert "session token" in body["errors"][0]["message"]


async def test_malformed_json_body_is_400_with_json(client: Client, auth: dict[str, str]) -> None:
    resp = await client.post("/query", data=b"{not json", headers=auth)
    assert resp.status == 400
    body = await resp.json()
    assert body["data"] is None and "not JSON" in body["errors"][0]["message"]


@pytest.mark.parametrize(
    "payload", [{}, {"query": 3}, [1, 2]], ids=["no-query", "int-query", "array"]
)
async def test_body_without_query_string_is_400(
    client: Client, auth: dict[str, str], payload: object
) -> None:
    status, body = await post(client, auth, payload)
    assert status == 400
    assert body["errors"][0]["message"]


async def test_syntax_error_is_graphql_error_with_location(
    client: Client, auth: dict[str, str]
) -> None:
    status, body = await post(client, auth, {"query": "{ echo(text: "})
    assert status == 200
    assert body["data"] is None
    [error] = body["errors"]
    assert error["message"].startswith("Syntax Error")
    assert error["locations"] == [{"line": 1, "column": 14}]


async def test_unknown_field_is_graphql_error(client: Client, auth: dict[str, str]) -> None:
    status, body = await post(client, auth, {"query": "{ nope }"})
    assert status == 200
    assert body["data"] is None
    assert "Cannot query field 'nope'" in body["errors"][0]["message"]


async def test_wrong_argument_type_is_graphql_error(client: Client, auth: dict[str, str]) -> None:
    _, body = await post(client, auth, {"query": '{ echo(text: "a", times: "two") }'})
    assert body["data"] is None
    assert "Int cannot represent" in body["errors"][0]["message"]


async def test_exec_error_has_dagger_extensions(client: Client, auth: dict[str, str]) -> None:
    query = "{ failExec(code: 2, stdoutBytes: 200000, stderrBytes: 10) }"
    status, body = await post(client, auth, {"query": query})
    assert status == 200
    assert body["data"] is None
    [error] = body["errors"]
    assert "exit code: 2" in error["message"]
    assert "ooo" not in error["message"] and "eee" not in error["message"]
    assert error["path"] == ["failExec"]
    assert error["locations"] == [{"line": 1, "column": 3}]
    ext = error["extensions"]
    assert set(ext) == {"_type", "cmd", "exitCode", "stdout", "stderr"}
    assert ext["_type"] == "EXEC_ERROR"
    assert ext["cmd"] == ["sh", "-c", "false"]
    assert ext["exitCode"] == 2
    assert len(ext["stdout"]) == 100 * 1024 and ext["stdout"].endswith("END")
    assert ext["stderr"] == "e" * 10


async def test_errors_inside_task_groups_are_unwrapped(
    client: Client, auth: dict[str, str]
) -> None:
    _, body = await post(client, auth, {"query": "{ groupFail(exec: true) }"})
    [error] = body["errors"]
    assert "exit code: 1" in error["message"]
    assert error["extensions"]["_type"] == "EXEC_ERROR"
    assert error["extensions"]["stderr"] == "no rule"
    _, body = await post(client, auth, {"query": "{ groupFail(exec: false) }"})
    assert body["errors"][0]["message"] == "path 'x' is outside the workdir"
    assert body["errors"][0]["extensions"] == {"_type": "INVALID_ARGUMENT"}  # the leaf's code


async def test_unexpected_resolver_exception_is_graphql_error_and_logged(
    client: Client,
    auth: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="dirk.wire.server"):
        status, body = await post(client, auth, {"query": "{ version boom }"})
    assert status == 200
    assert body["data"] == {"version": VERSION, "boom": None}
    assert body["errors"] == [
        {
            "message": "the resolver divided by zero",
            "locations": [{"line": 1, "column": 11}],
            "path": ["boom"],
        }
    ]
    [record] = [r for r in caplog.records if r.exc_info]
    assert record.exc_info is not None and record.exc_info[0] is ZeroDivisionError


async def test_a_bug_inside_a_step_is_logged_with_its_traceback(
    client: Client,
    auth: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="dirk.wire.server"):
        status, body = await post(client, auth, {"query": "{ stepBug }"})
    assert status == 200
    assert body["errors"][0]["message"] == "exec make: 'missing'"
    [record] = [r for r in caplog.records if r.exc_info]
    assert record.exc_info is not None and record.exc_info[0] is KeyError


async def test_full_introspection_with_deprecated_args(
    client: Client, auth: dict[str, str]
) -> None:
    query = graphql.get_introspection_query(descriptions=True, input_value_deprecation=True)
    status, body = await post(client, auth, {"query": query, "operationName": "IntrospectionQuery"})
    assert status == 200 and "errors" not in body
    schema = graphql.build_client_schema(body["data"])
    args = schema.query_type.fields["deprecatedArg"].args  # type: ignore[union-attr]
    assert args["old"].deprecation_reason == "use new"


async def test_requests_of_one_session_run_concurrently(
    client: Client, auth: dict[str, str], probe: Probe
) -> None:
    started = time.monotonic()
    answers = await asyncio.gather(
        *(post(client, auth, {"query": "{ sleep(seconds: 0.3) }"}) for _ in range(10))
    )
    elapsed = time.monotonic() - started
    assert all(a == (200, {"data": {"sleep": 0.3}}) for a in answers)
    assert probe.peak == 10
    assert elapsed < 1.5


async def test_unknown_route_and_method_answer_json(client: Client) -> None:
    resp = await client.get("/nope")
    assert resp.status == 404 and (await resp.json())["errors"]
    resp = await client.get("/query")
    assert resp.status == 405 and "405" in (await resp.json())["errors"][0]["message"]
