"""Engine answers and transport failures become the `dirk.errors` a user can act on."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest

from dirk.errors import (
    ClientConnectionError,
    ExecError,
    QueryError,
    QueryTimeoutError,
    SessionAuthError,
)
from dirk.wire.client import EngineAddress, GraphQLClient, health

ADDRESS = EngineAddress("http://127.0.0.1:4321")


def _query(handler: Callable[[httpx.Request], httpx.Response], token: str = "tok") -> Any:
    async def main() -> Any:
        client = GraphQLClient(ADDRESS, token, transport=httpx.MockTransport(handler))
        try:
            return await client.execute("{ version }")
        finally:
            await client.aclose()

    return anyio.run(main)


def _answer(status: int, body: Any) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(status, json=body)


def test_basic_auth_carries_the_token_with_an_empty_password() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"data": {"version": "1"}})

    assert _query(handler, token="s3ss10n") == {"version": "1"}
    assert seen[0].headers["authorization"] == "Basic czNzczEwbjo="  # "s3ss10n:"
    assert seen[0].url.path == "/query"


def test_exec_error_extensions_become_exec_error() -> None:
    error = {
        "message": 'process "sh -c exit 3" did not complete successfully: exit code: 3',
        "path": ["container", "withExec", "sync"],
        "extensions": {
            "_type": "EXEC_ERROR",
            "cmd": ["sh", "-c", "exit 3"],
            "exitCode": 3,
            "stdout": "partial\n",
            "stderr": "bad thing\n",
        },
    }
    with pytest.raises(ExecError) as caught:
        _query(_answer(200, {"data": None, "errors": [error]}))
    assert (caught.value.command, caught.value.exit_code) == (["sh", "-c", "exit 3"], 3)
    assert (caught.value.stdout, caught.value.stderr) == ("partial\n", "bad thing\n")
    assert caught.value.path == ["container", "withExec", "sync"]
    assert "exit code: 3" in str(caught.value) and "bad thing" in str(caught.value)


def test_other_graphql_errors_become_query_error_with_path() -> None:
    body = {"data": None, "errors": [{"message": "no such image", "path": ["container", "from"]}]}
    with pytest.raises(QueryError) as caught:
        _query(_answer(200, body))
    assert type(caught.value) is QueryError
    assert caught.value.message == "no such image"
    assert caught.value.path == ["container", "from"]


def test_validation_errors_on_400_are_query_errors() -> None:
    body = {"data": None, "errors": [{"message": "Cannot query field 'nope' on type 'Query'."}]}
    with pytest.raises(QueryError, match="nope"):
        _query(_answer(400, body))


def test_401_is_session_auth_error() -> None:
    body = {"data": None, "errors": [{"message": "unknown token"}]}
    with pytest.raises(SessionAuthError, match="refused the session token"):
        _query(_answer(401, body))


def test_non_json_answer_names_the_server() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html>bad gateway</html>")

    with pytest.raises(ClientConnectionError, match=r"http://127\.0\.0\.1:4321.*not JSON"):
        _query(handler)


def test_read_timeout_is_query_timeout_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(QueryTimeoutError, match=r"Config\.timeout"):
        _query(handler)


def test_refused_connection_names_the_url_and_a_hint() -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = EngineAddress(f"http://127.0.0.1:{port}")

    async def main() -> None:
        client = GraphQLClient(address, "tok")
        try:
            await client.execute("{ version }")
        finally:
            await client.aclose()

    with pytest.raises(ClientConnectionError) as caught:
        anyio.run(main)
    assert f"http://127.0.0.1:{port}" in str(caught.value)
    assert "DIRK_ENGINE" in str(caught.value)


def test_missing_socket_names_the_socket() -> None:
    with pytest.raises(ClientConnectionError, match=r"unix:///nonexistent/engine\.sock"):
        anyio.run(health, EngineAddress.unix("/nonexistent/engine.sock"))
