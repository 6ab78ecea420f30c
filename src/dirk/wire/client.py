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

import contextlib
import functools
import logging
import socket
import ssl
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
import attrs
import httpx

from dirk.errors import (
    ClientConnectionError,
    QueryError,
    QueryErrorValue,
    QueryTimeoutError,
    SessionAuthError,
)
from dirk.wire.codes import EXEC_ERROR, error_from_wire

#: Seconds to wait for a TCP/unix connection to the engine to open.
CONNECT_TIMEOUT = 10.0
#: Seconds the control calls (health, session create/delete) may take.
CONTROL_TIMEOUT = 10.0
#: The SDK keeps this many connections per session open (the official SDKs use 100 too).
MAX_CONNECTIONS = 100
#: The first line of an attach stream: the engine counts the attach before sending it.
ATTACHED_LINE = '{"attached":true}'

log = logging.getLogger(__name__)

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


def _raise_errors(body: Any, response: httpx.Response, address: EngineAddress) -> None:
    errors = body.get("errors") if isinstance(body, Mapping) else None
    if errors and isinstance(errors, list):
        raise error_from_graphql(errors)
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
    env: Mapping[str, str] | None = None,
) -> SessionGrant:
    """`POST /sessions`: a new session whose host paths resolve against `workdir`; `env` is
    the client's environment, which the engine keeps in memory for env:// secrets."""
    headers = {"Authorization": f"Bearer {admin_token}"} if admin_token else None
    async with _http_client(address, read_timeout=CONTROL_TIMEOUT, headers=headers) as http:
        try:
            response = await http.post(
                "/sessions",
                json={"workdir": workdir, "labels": dict(labels), "env": dict(env or {})},
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


class SessionAttachment:
    """Holds `GET /sessions/<token>/attach` open for as long as this program wants its session.

    The connection lives in a daemon thread of its own, not in a task of the caller's event
    loop: it needs nothing from the caller (no task group around the user's code, no loop that
    must stay responsive), and it dies with the process, which is the point: when the kernel
    closes the socket of a killed program, the engine ends the session. Create it with
    `attach_session`; `close` it after `DELETE`. If the engine goes away first, the thread ends
    quietly: the next query reports the engine's absence.
    """

    def __init__(self, address: EngineAddress, token: str) -> None:
        self.address = address
        self._token = token
        self._ready = threading.Event()
        self._error: ClientConnectionError | None = None
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._closing = False
        self._thread = threading.Thread(
            target=self._hold, name=f"dirk-attach-{token[:8]}", daemon=True
        )

    @property
    def alive(self) -> bool:
        """Whether the attach connection is open (False once the engine ended the stream)."""
        return self._ready.is_set() and self._error is None and self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()

    def wait_attached(self, timeout: float) -> None:
        """Blocks until the engine counted the attach; raises why it did not."""
        if not self._ready.wait(timeout):
            self.close()
            raise ClientConnectionError(
                f"the dirk engine at {self.address} did not confirm the session's attach "
                f"connection within {timeout:g} s; is it overloaded or stuck? See its engine.log"
            )
        if self._error is not None:
            raise self._error

    def close(self, timeout: float = 1.0) -> None:
        """Drops the attach connection (the engine ends a session still alive whose last
        attach this was) and waits up to `timeout` seconds for the thread to end."""
        with self._lock:
            self._closing = True
            sock = self._socket
        if sock is not None:
            with contextlib.suppress(OSError):  # wakes the thread's read; it closes the socket
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _hold(self) -> None:
        try:
            self._attach_and_read()
        except Exception as exc:  # never a traceback from a background thread
            if not self._ready.is_set():
                self._error = _unreachable(self.address, exc)
            elif not self._closing:
                log.debug("the attach connection to %s broke: %s", self.address, exc)
        finally:
            self._ready.set()

    def _attach_and_read(self) -> None:
        with (
            _sync_http_client(self.address, self._token) as http,
            http.stream("GET", f"/sessions/{self._token}/attach") as response,
        ):
            if response.status_code != 200:
                response.read()
                self._error = _attach_refused(response, self.address)
                return
            stream = response.extensions.get("network_stream")
            sock = stream.get_extra_info("socket") if stream is not None else None
            with self._lock:
                self._socket = sock if isinstance(sock, socket.socket) else None
                if self._closing:
                    return
            lines = response.iter_lines()
            first = next(lines, None)
            if first != ATTACHED_LINE:
                self._error = ClientConnectionError(
                    f"the server at {self.address} answered the session attach with "
                    f"{first!r} instead of {ATTACHED_LINE}: is it a dirk engine?"
                )
                return
            self._ready.set()
            for _ in lines:  # heartbeats, until the engine ends the stream or `close`
                pass
        if not self._closing:
            log.debug("the dirk engine at %s ended the session's attach stream", self.address)


def _sync_http_client(address: EngineAddress, token: str) -> httpx.Client:
    """The attach thread's own client: no read timeout (an idle stream is the normal case)."""
    transport = httpx.HTTPTransport(
        uds=address.uds, verify=_tls_context(address.base_url.startswith("https://"))
    )
    return httpx.Client(
        base_url=address.base_url,
        transport=transport,
        timeout=httpx.Timeout(connect=CONNECT_TIMEOUT, read=None, write=CONTROL_TIMEOUT, pool=None),
        auth=httpx.BasicAuth(token, ""),
        trust_env=False,
    )


def _attach_refused(response: httpx.Response, address: EngineAddress) -> ClientConnectionError:
    if response.status_code == 401:
        return SessionAuthError(
            f"the dirk engine at {address} refused to attach to the session: it has ended "
            "(engine restarted?) or the token is wrong; open a new dirk.Connection"
        )
    return ClientConnectionError(
        f"the dirk engine at {address} answered HTTP {response.status_code} to the session "
        f"attach: {response.text[:200]!r}; is the engine older than this SDK? Restart it"
    )


async def attach_session(
    address: EngineAddress, token: str, timeout: float = CONTROL_TIMEOUT
) -> SessionAttachment:
    """`GET /sessions/<token>/attach`, held open until `close()`: from then on the engine ends
    the session when this program dies. Returns once the engine counted the attach."""
    attachment = SessionAttachment(address, token)
    attachment.start()
    try:
        await anyio.to_thread.run_sync(attachment.wait_attached, timeout, abandon_on_cancel=True)
    except BaseException:
        attachment.close(timeout=0)
        raise
    return attachment


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
