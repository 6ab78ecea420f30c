"""The SDK's side of the wire: health checks, sessions and GraphQL queries over HTTP.

Everything here follows the wire contract: session creation on the engine's unix socket (or on
TCP with the admin token), queries as `POST /query` with HTTP Basic auth (the session token as
user name, empty password), and JSON error bodies raised as the `dirk.errors` class the engine
raised (`dirk.wire.codes`). Queries get no read timeout unless the caller sets one: an
evaluation can legitimately run for a long time.
The program that owns a session holds it attached (`SessionAttachment`), so that the engine ends
the session when the program dies however it dies.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from dirk.errors import (
    ClientConnectionError,
    QueryError,
    QueryErrorValue,
    QueryTimeoutError,
    SessionAuthError,
)
from dirk.wire import http
from dirk.wire.codes import EXEC_ERROR, error_from_wire
from dirk.wire.driver import ANYIO, IO

if TYPE_CHECKING:
    import ssl

    import httpx

#: Seconds to wait for a TCP/unix connection to the engine to open.
CONNECT_TIMEOUT = 10.0
#: Seconds the control calls (health, session create/delete) may take.
CONTROL_TIMEOUT = 10.0
#: The SDK keeps this many connections per session open (the official SDKs use 100 too).
MAX_CONNECTIONS = 100


CLOSED_MESSAGE = (
    "the connection to the dirk engine is closed: use dirk objects only inside "
    "the `with dirk.Connection(...)` block that created them"
)
#: True wherever the address came from (Config.engine, DIRK_ENGINE, `dirk run`, engine.json).
_HINT = (
    "is the engine running? Without Config.engine or DIRK_ENGINE the SDK starts the local "
    "engine itself; `dirk engine` starts one by hand"
)


class EngineAddress(NamedTuple):
    """Where an engine's HTTP server listens: a base URL, reached through `uds` when set."""

    base_url: str
    uds: str | None = None

    def __str__(self) -> str:
        return f"unix://{self.uds}" if self.uds else self.base_url

    @classmethod
    def unix(cls, path: str) -> EngineAddress:
        # The host part is ignored on a unix socket (it is sent as the Host header).
        return cls("http://dirk-engine", uds=path)


class SessionGrant(NamedTuple):
    """What `POST /sessions` answers: the session token, the engine's TCP port and version
    ("" from an engine that does not say)."""

    token: str
    port: int
    version: str = ""


@functools.cache
def _tls_context(https: bool) -> ssl.SSLContext | None:
    """Built once per process (loading CA certificates takes ~20 ms); None for plain HTTP and
    unix sockets, which never use TLS."""
    if not https:
        return None
    import ssl

    return ssl.create_default_context()


def _pool(
    address: EngineAddress,
    *,
    blocking: bool,
    read_timeout: float | None,
    headers: Mapping[str, str] | None = None,
) -> http.Pool:
    return http.Pool(
        address.base_url,
        uds=address.uds,
        blocking=blocking,
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=read_timeout,
        headers=headers,
        max_connections=MAX_CONNECTIONS,
        ssl_context=_tls_context(address.base_url.startswith("https://")),
    )


def _unreachable(address: EngineAddress, exc: Exception) -> ClientConnectionError:
    detail = str(exc) or type(exc).__name__
    return ClientConnectionError(f"cannot reach the dirk engine at {address}: {detail}; {_HINT}")


def _json_body(response: http.Response, address: EngineAddress) -> Any:
    try:
        return response.json()
    except ValueError:
        text = response.text[:200]
        raise ClientConnectionError(
            f"the server at {address} answered HTTP {response.status} with a body that is "
            f"not JSON ({text!r}): is it a dirk engine?"
        ) from None


def _raise_auth(response: http.Response, address: EngineAddress, what: str) -> None:
    if response.status == 401:
        raise SessionAuthError(
            f"the dirk engine at {address} refused the {what}: the session ended (engine "
            "restarted?) or the token is wrong; open a new dirk.Connection"
        )


def _entry(error: Any) -> QueryErrorValue:
    """One entry of an answer's `errors`, whatever its shape."""
    if not isinstance(error, Mapping):
        return QueryErrorValue(str(error))
    message = str(error.get("message") or "the engine reported an error without a message")
    path = [p for p in error.get("path") or [] if isinstance(p, str | int)]
    locations = [
        {"line": int(loc["line"]), "column": int(loc["column"])}
        for loc in error.get("locations") or []
        if isinstance(loc, Mapping)
        and isinstance(loc.get("line"), int)
        and isinstance(loc.get("column"), int)
    ]
    extensions = error.get("extensions")
    return QueryErrorValue(
        message,
        path or None,
        locations or None,
        dict(extensions) if isinstance(extensions, Mapping) else {},
    )


def error_from_graphql(errors: Sequence[Any]) -> QueryError:
    """The dirk exception for a GraphQL answer's `errors`: the class the first error's code
    names (`dirk.wire.codes`), with every entry in `errors`; the message mentions the others."""
    entries = [_entry(error) for error in errors] or [_entry({})]
    first = entries[0]
    message = first.message
    if len(entries) > 1 and first.extensions.get("_type") != EXEC_ERROR:
        others = "; ".join(entry.message for entry in entries[1:])
        message = f"{message} (and {len(entries) - 1} more: {others})"
    return error_from_wire(message, first.path or [], first.extensions, entries)


def _raise_errors(body: Any, response: http.Response, address: EngineAddress, path: str) -> None:
    errors = body.get("errors") if isinstance(body, Mapping) else None
    if errors and isinstance(errors, list):
        raise error_from_graphql(errors)
    if response.status >= 400:
        raise ClientConnectionError(
            f"the dirk engine at {address} answered HTTP {response.status} "
            f"to {path}: {response.text[:200]!r}"
        )


async def _control(
    address: EngineAddress,
    method: str,
    path: str,
    io: IO,
    *,
    timeout: float = CONTROL_TIMEOUT,
    json_body: Any = None,
    headers: Mapping[str, str] | None = None,
) -> http.Response:
    """One control request on a connection of its own (closed after it)."""
    pool = _pool(address, blocking=io.blocking, read_timeout=timeout, headers=headers)
    try:
        return await pool.request(method, path, json_body=json_body)
    except http.TransportError as exc:
        raise _unreachable(address, exc) from None
    finally:
        await pool.aclose()


async def health(
    address: EngineAddress, timeout: float = CONTROL_TIMEOUT, *, io: IO = ANYIO
) -> str:
    """The engine's version, from `GET /health`; `ClientConnectionError` when it does not answer."""
    response = await _control(address, "GET", "/health", io, timeout=timeout)
    body = _json_body(response, address)
    _raise_errors(body, response, address, "/health")
    return str(body.get("version", "")) if isinstance(body, Mapping) else ""


async def create_session(
    address: EngineAddress,
    workdir: str,
    labels: Mapping[str, str],
    admin_token: str | None = None,
    env: Mapping[str, str] | None = None,
    *,
    io: IO = ANYIO,
    explain: bool = False,
) -> SessionGrant:
    """`POST /sessions`: a new session whose host paths resolve against `workdir`; `env` is
    the client's environment, which the engine keeps in memory for env:// secrets; with
    `explain`, its steps that miss the cache say why (in its event stream)."""
    headers = {"Authorization": f"Bearer {admin_token}"} if admin_token else None
    payload: dict[str, object] = {
        "workdir": workdir,
        "labels": dict(labels),
        "env": dict(env or {}),
    }
    if explain:
        payload["explain"] = True
    response = await _control(address, "POST", "/sessions", io, json_body=payload, headers=headers)
    if response.status == 401:
        hint = (
            "set DIRK_ENGINE_TOKEN to the engine's admin_token (in its engine.json)"
            if address.uds is None
            else "the engine's socket should not need a token: is it a dirk engine?"
        )
        raise SessionAuthError(f"the dirk engine at {address} refused to open a session: {hint}")
    body = _json_body(response, address)
    _raise_errors(body, response, address, "/sessions")
    try:
        return SessionGrant(
            token=str(body["token"]), port=int(body["port"]), version=str(body.get("version", ""))
        )
    except (KeyError, TypeError, ValueError):
        raise ClientConnectionError(
            f"the dirk engine at {address} answered POST /sessions without a token and port: "
            f"{body!r}"
        ) from None


async def delete_session(address: EngineAddress, token: str, *, io: IO = ANYIO) -> None:
    """`DELETE /sessions/<token>`: ends the session; its IDs become invalid."""
    path = f"/sessions/{token}"
    headers = {"Authorization": http.basic_auth(token)}
    response = await _control(address, "DELETE", path, io, headers=headers)
    _raise_auth(response, address, "session token")
    if response.status >= 400:
        _raise_errors(_json_body(response, address), response, address, "/sessions/...")


async def list_sessions(
    address: EngineAddress, admin_token: str | None = None, *, io: IO = ANYIO
) -> list[Any]:
    """`GET /sessions`: the live sessions (id, workdir, labels, created, running, attached)."""
    headers = {"Authorization": f"Bearer {admin_token}"} if admin_token else None
    response = await _control(address, "GET", "/sessions", io, headers=headers)
    body = _json_body(response, address)
    _raise_errors(body, response, address, "/sessions")
    sessions = body.get("sessions") if isinstance(body, Mapping) else None
    return list(sessions) if isinstance(sessions, list) else []


class _HttpxPool:
    """`http.Pool`'s request through an httpx transport (tests inject `httpx.MockTransport`)."""

    def __init__(self, address: EngineAddress, transport: httpx.AsyncBaseTransport, token: str):
        import httpx

        self._httpx = httpx
        self._client = httpx.AsyncClient(
            base_url=address.base_url,
            transport=transport,
            auth=httpx.BasicAuth(token, ""),
            trust_env=False,
        )

    async def request(self, method: str, path: str, *, json_body: Any = None) -> http.Response:
        httpx = self._httpx
        try:
            response = await self._client.request(method, path, json=json_body)
        except (httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise http.ConnectTimeout(str(exc)) from exc
        except httpx.TimeoutException as exc:
            raise http.ReadTimeout(str(exc)) from exc
        except httpx.TransportError as exc:
            raise http.TransportError(str(exc) or type(exc).__name__) from exc
        return http.Response(response.status_code, list(response.headers.raw), response.content)

    async def aclose(self) -> None:
        await self._client.aclose()


class GraphQLClient:
    """One session's query channel: `POST /query` with the session token as Basic auth.

    `blocking=True` makes its coroutines block instead of suspend (`dirk.wire.driver`)."""

    def __init__(
        self,
        address: EngineAddress,
        token: str,
        timeout: float | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        blocking: bool = False,
    ) -> None:
        self.address = address
        self.timeout = timeout
        self.blocking = blocking and transport is None
        self._pool: http.Pool | None = None
        self._httpx: _HttpxPool | None = None
        if transport is None:
            self._pool = _pool(
                address,
                blocking=self.blocking,
                read_timeout=timeout,
                headers={"Authorization": http.basic_auth(token)},
            )
        else:
            self._httpx = _HttpxPool(address, transport, token)
        self.closed = False
        #: The `extensions` of the last answer that had any.
        self.last_extensions: Any = None

    async def execute(
        self, query: str, variables: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The `data` of the answer; raises the mapped `dirk.errors` exception on errors."""
        if self.closed:
            raise ClientConnectionError(CLOSED_MESSAGE)
        payload: dict[str, Any] = {"query": query}
        if variables:
            payload["variables"] = dict(variables)
        try:
            if self._pool is not None:
                response = await self._pool.request("POST", "/query", json_body=payload)
            else:
                assert self._httpx is not None
                response = await self._httpx.request("POST", "/query", json_body=payload)
        except http.ConnectError as exc:
            raise _unreachable(self.address, exc) from None
        except http.ReadTimeout as exc:
            raise QueryTimeoutError(
                f"the query did not finish within {self.timeout} s (Config.timeout); raise or "
                "unset the timeout for long pipelines"
            ) from exc
        except http.TransportError as exc:
            raise _unreachable(self.address, exc) from None
        _raise_auth(response, self.address, "session token")
        body = _json_body(response, self.address)
        _raise_errors(body, response, self.address, "/query")
        data = body.get("data") if isinstance(body, Mapping) else None
        if not isinstance(data, dict):
            raise QueryError(f"the dirk engine at {self.address} answered without data: {body!r}")
        if "extensions" in body:  # e.g. the engine's timing marks (DIRK_TIMING), for benchmarks
            self.last_extensions = body["extensions"]
        return data

    async def aclose(self) -> None:
        self.closed = True
        if self._pool is not None:
            await self._pool.aclose()
        if self._httpx is not None:
            await self._httpx.aclose()
