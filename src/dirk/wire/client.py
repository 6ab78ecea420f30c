"""The SDK's side of the wire: health checks, sessions and GraphQL queries over HTTP.

Everything here follows the wire contract: session creation on the engine's unix socket (or on
TCP with the admin token), queries as `POST /query` with HTTP Basic auth (the session token as
user name, empty password), and JSON error bodies mapped onto `dirk.errors`. Queries get no
read timeout unless the caller sets one: an evaluation can legitimately run for a long time.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Mapping
from typing import Any

import attrs
import httpx

from dirk.errors import (
    ClientConnectionError,
    ExecError,
    QueryError,
    QueryTimeoutError,
    SessionAuthError,
)

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


@attrs.frozen
class EngineAddress:
    """Where an engine's HTTP server listens: a base URL, reached through `uds` when set."""

    base_url: str
    uds: str | None = None

    def __str__(self) -> str:
        return f"unix://{self.uds}" if self.uds else self.base_url

    @classmethod
    def unix(cls, path: str) -> EngineAddress:
        # The host part is ignored on a unix socket; httpx still needs a well-formed URL.
        return cls("http://dirk-engine", uds=path)


@attrs.frozen
class SessionGrant:
    """What `POST /sessions` answers: the session token and the engine's TCP port."""

    token: str
    port: int


@functools.cache
def _tls_context(https: bool) -> ssl.SSLContext:
    """Built once: httpx would build (and load CA certificates into) one per client, ~20 ms.

    Plain-HTTP and unix-socket addresses never use TLS; they get a context without CA
    certificates that still requires verification, so it can never accept a peer.
    """
    if https:
        return ssl.create_default_context()
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def _http_client(
    address: EngineAddress,
    *,
    read_timeout: float | None,
    auth: httpx.Auth | None = None,
    headers: Mapping[str, str] | None = None,
) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(
        uds=address.uds,
        verify=_tls_context(address.base_url.startswith("https://")),
        limits=httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=20),
    )
    timeout = httpx.Timeout(
        connect=CONNECT_TIMEOUT, read=read_timeout, write=read_timeout, pool=None
    )
    return httpx.AsyncClient(
        base_url=address.base_url,
        transport=transport,
        timeout=timeout,
        auth=auth,
        headers=headers,
        trust_env=False,  # the engine is local or named explicitly: never go through a proxy
    )


def _unreachable(address: EngineAddress, exc: Exception) -> ClientConnectionError:
    detail = str(exc) or type(exc).__name__
    return ClientConnectionError(f"cannot reach the dirk engine at {address}: {detail}; {_HINT}")


def _json_body(response: httpx.Response, address: EngineAddress) -> Any:
    try:
        return response.json()
    except ValueError:
        text = response.text[:200]
        raise ClientConnectionError(
            f"the server at {address} answered HTTP {response.status_code} with a body that is "
            f"not JSON ({text!r}): is it a dirk engine?"
        ) from None


def _raise_auth(response: httpx.Response, address: EngineAddress, what: str) -> None:
    if response.status_code == 401:
        raise SessionAuthError(
            f"the dirk engine at {address} refused the {what}: the session ended (engine "
            "restarted?) or the token is wrong; open a new dirk.Connection"
        )


def error_from_graphql(error: Mapping[str, Any]) -> QueryError:
    """The dirk exception for one entry of a GraphQL answer's `errors`."""
    message = str(error.get("message") or "the engine reported an error without a message")
    path = [p for p in error.get("path") or [] if isinstance(p, str | int)]
    extensions = error.get("extensions") or {}
    if isinstance(extensions, Mapping) and extensions.get("_type") == "EXEC_ERROR":
        return ExecError(
            cmd=[str(arg) for arg in extensions.get("cmd") or []],
            exit_code=int(extensions.get("exitCode", -1)),
            stdout=str(extensions.get("stdout", "")),
            stderr=str(extensions.get("stderr", "")),
            message=message,
            path=path,
        )
    return QueryError(message, path)


def _raise_errors(body: Any, response: httpx.Response, address: EngineAddress) -> None:
    errors = body.get("errors") if isinstance(body, Mapping) else None
    if errors:
        first = errors[0] if isinstance(errors[0], Mapping) else {"message": str(errors[0])}
        exc = error_from_graphql(first)
        if len(errors) > 1 and not isinstance(exc, ExecError):
            others = "; ".join(
                str(e.get("message", e)) for e in errors[1:] if isinstance(e, Mapping)
            )
            exc = QueryError(f"{exc.message} (and {len(errors) - 1} more: {others})", exc.path)
        raise exc
    if response.status_code >= 400:
        raise ClientConnectionError(
            f"the dirk engine at {address} answered HTTP {response.status_code} "
            f"to {response.request.url.path}: {response.text[:200]!r}"
        )


async def health(address: EngineAddress, timeout: float = CONTROL_TIMEOUT) -> str:
    """The engine's version, from `GET /health`; `ClientConnectionError` when it does not answer."""
    async with _http_client(address, read_timeout=timeout) as http:
        try:
            response = await http.get("/health")
        except httpx.TransportError as exc:
            raise _unreachable(address, exc) from None
    body = _json_body(response, address)
    _raise_errors(body, response, address)
    return str(body.get("version", "")) if isinstance(body, Mapping) else ""


async def create_session(
    address: EngineAddress,
    workdir: str,
    labels: Mapping[str, str],
    admin_token: str | None = None,
) -> SessionGrant:
    """`POST /sessions`: a new session whose host paths resolve against `workdir`."""
    headers = {"Authorization": f"Bearer {admin_token}"} if admin_token else None
    async with _http_client(address, read_timeout=CONTROL_TIMEOUT, headers=headers) as http:
        try:
            response = await http.post(
                "/sessions", json={"workdir": workdir, "labels": dict(labels)}
            )
        except httpx.TransportError as exc:
            raise _unreachable(address, exc) from None
    if response.status_code == 401:
        hint = (
            "set DIRK_ENGINE_TOKEN to the engine's admin_token (in its engine.json)"
            if address.uds is None
            else "the engine's socket should not need a token: is it a dirk engine?"
        )
        raise SessionAuthError(f"the dirk engine at {address} refused to open a session: {hint}")
    body = _json_body(response, address)
    _raise_errors(body, response, address)
    try:
        return SessionGrant(token=str(body["token"]), port=int(body["port"]))
    except (KeyError, TypeError, ValueError):
        raise ClientConnectionError(
            f"the dirk engine at {address} answered POST /sessions without a token and port: "
            f"{body!r}"
        ) from None


async def delete_session(address: EngineAddress, token: str) -> None:
    """`DELETE /sessions/<token>`: ends the session; its IDs become invalid."""
    auth = httpx.BasicAuth(token, "")
    async with _http_client(address, read_timeout=CONTROL_TIMEOUT, auth=auth) as http:
        try:
            response = await http.delete(f"/sessions/{token}")
        except httpx.TransportError as exc:
            raise _unreachable(address, exc) from None
    _raise_auth(response, address, "session token")
    if response.status_code >= 400:
        _raise_errors(_json_body(response, address), response, address)


class GraphQLClient:
    """One session's query channel: `POST /query` with the session token as Basic auth."""

    def __init__(
        self,
        address: EngineAddress,
        token: str,
        timeout: float | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.address = address
        self.timeout = timeout
        auth = httpx.BasicAuth(token, "")
        if transport is None:
            self._http = _http_client(address, read_timeout=timeout, auth=auth)
        else:  # tests inject httpx.MockTransport here
            self._http = httpx.AsyncClient(
                base_url=address.base_url, transport=transport, auth=auth, trust_env=False
            )
        self.closed = False

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
            response = await self._http.post("/query", json=payload)
        except httpx.TimeoutException as exc:
            if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
                raise _unreachable(self.address, exc) from None
            raise QueryTimeoutError(
                f"the query did not finish within {self.timeout} s (Config.timeout); raise or "
                "unset the timeout for long pipelines"
            ) from exc
        except httpx.TransportError as exc:
            raise _unreachable(self.address, exc) from None
        _raise_auth(response, self.address, "session token")
        body = _json_body(response, self.address)
        _raise_errors(body, response, self.address)
        data = body.get("data") if isinstance(body, Mapping) else None
        if not isinstance(data, dict):
            raise QueryError(f"the dirk engine at {self.address} answered without data: {body!r}")
        return data

    async def aclose(self) -> None:
        self.closed = True
        await self._http.aclose()
