"""The SDK's HTTP/1.1 client: httptools parses, plain sockets (sync) or anyio (async) do the I/O.

Why not httpx here: importing httpx costs more than a cached pipeline's whole run (it imports
its command-line module, and with it rich, click and pygments, whenever they are installed, as
they are for dirk), and the SDK needs only a small part of it: JSON requests with keep-alive to
one engine over a unix socket or TCP, one streamed response (the session's attach), timeouts.
httptools (the bindings of llhttp, Node's HTTP parser, that uvicorn uses) parses the answers:
it imports in a millisecond, where h11 and the dataclasses it is made of were a sixth of a cached
pipeline program's start. This module writes the requests and does the I/O.

The request logic is written once as coroutines over a `_Stream`. In sync mode the stream is a
blocking socket whose `async` methods never suspend, so `dirk.wire.io.drive` runs a request to
its end without an event loop (a sync program never imports asyncio); in async mode the stream
is an anyio socket stream. A `Pool` keeps idle connections for reuse, checks that the engine has
not closed one before it is reused, and never returns a connection whose exchange was cut short
(an error, a timeout, a cancelled task, Ctrl-C).
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import select
import socket
import threading
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import httptools

if TYPE_CHECKING:
    import ssl

    import anyio.abc

#: Bytes read from the socket at once.
READ_SIZE = 65536
USER_AGENT = b"dirk-sdk"


class TransportError(Exception):
    """The engine could not be reached, or the exchange broke before a whole answer came."""


class ConnectError(TransportError):
    """No connection could be opened (refused, no such socket, unreachable)."""


class ConnectTimeout(ConnectError):
    """Opening the connection took longer than the connect timeout."""


class ReadTimeout(TransportError):
    """The answer (or a part of it) took longer than the read timeout."""


class ProtocolError(TransportError):
    """The peer does not speak HTTP/1.1 as expected (or closed the connection mid-answer)."""


class _Unanswered(ProtocolError):
    """The connection ended before any byte of the answer arrived."""


class Response:
    """A whole answer: status, headers (lower-case names) and body."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body as JSON; `ValueError` when it is not."""
        return json.loads(self.body)


def basic_auth(user: str, password: str = "") -> str:
    """An `Authorization` header value for HTTP Basic auth."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


# --- streams: one connected socket, sync or async ----------------------------------------------


class _Stream(Protocol):
    async def send(self, data: bytes) -> None: ...

    async def receive(self) -> bytes: ...

    def readable(self) -> bool:
        """True when the socket has something to read (or EOF) while idle: not reusable."""
        ...

    async def aclose(self) -> None:
        """Closes the connection at once, also in a cancelled task."""
        ...


def _readable(sock: Any) -> bool:
    """`sock`: anything with a `fileno()` (asyncio hands out a wrapper of the socket)."""
    if sock is None:
        return True
    try:
        ready, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(ready)


class SyncStream:
    """A blocking socket; its coroutines finish without ever suspending."""

    def __init__(self, sock: socket.socket, timeout: float | None) -> None:
        self.sock = sock
        sock.settimeout(timeout)

    async def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except TimeoutError as exc:
            raise ReadTimeout("timed out sending the request") from exc
        except OSError as exc:
            raise ProtocolError(f"the connection broke while sending: {exc}") from exc

    async def receive(self) -> bytes:
        try:
            return self.sock.recv(READ_SIZE)
        except TimeoutError as exc:
            raise ReadTimeout("timed out waiting for the answer") from exc
        except OSError as exc:
            raise ProtocolError(f"the connection broke while reading: {exc}") from exc

    def readable(self) -> bool:
        return _readable(self.sock)

    async def aclose(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class _AsyncStream:
    """An anyio socket stream (unix or TCP, with TLS for https)."""

    def __init__(self, stream: anyio.abc.ByteStream, timeout: float | None) -> None:
        self.stream = stream
        self.timeout = timeout

    async def send(self, data: bytes) -> None:
        import anyio

        try:
            with anyio.fail_after(self.timeout):
                await self.stream.send(data)
        except TimeoutError as exc:
            raise ReadTimeout("timed out sending the request") from exc
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            raise ProtocolError(f"the connection broke while sending: {exc!r}") from exc

    async def receive(self) -> bytes:
        import anyio

        try:
            with anyio.fail_after(self.timeout):
                return await self.stream.receive(READ_SIZE)
        except anyio.EndOfStream:
            return b""
        except TimeoutError as exc:
            raise ReadTimeout("timed out waiting for the answer") from exc
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            raise ProtocolError(f"the connection broke while reading: {exc!r}") from exc

    def readable(self) -> bool:
        from anyio.abc import SocketAttribute

        return _readable(self.stream.extra(SocketAttribute.raw_socket, None))

    async def aclose(self) -> None:
        import anyio

        await anyio.aclose_forcefully(self.stream)


# --- connections ---------------------------------------------------------------------------


class Connection:
    """One HTTP/1.1 connection: requests one after the other (keep-alive).

    httptools (llhttp) parses the answers; its callbacks queue what they saw as events that
    `start` and `chunks` take one by one, reading the socket whenever the queue is empty."""

    def __init__(self, stream: _Stream) -> None:
        self.stream = stream
        self._events: deque[tuple[str, Any]] = deque()
        self._parser: httptools.HttpResponseParser | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._in_flight = False
        self._keep_alive = True
        self._received = False

    @property
    def reusable(self) -> bool:
        return not self._in_flight and self._keep_alive

    async def start(
        self, method: str, target: str, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> tuple[int, list[tuple[bytes, bytes]]]:
        """Sends a request and reads the answer's status and headers."""
        if body or method in ("POST", "PUT", "PATCH"):
            headers.append((b"Content-Length", str(len(body)).encode()))
        out = _request_head(method, target, headers) + body
        self._events.clear()
        self._parser = httptools.HttpResponseParser(self)
        self._in_flight = True
        self._received = False
        try:
            await self.stream.send(out)
            while True:
                kind, value = await self._next_event()
                if kind != "head":
                    raise ProtocolError(f"expected an HTTP answer, got its {kind}")
                status, head = value
                if not 100 <= status < 200:
                    return status, head
                while (await self._next_event())[0] != "end":  # an informational answer
                    pass
        except ProtocolError as exc:
            if self._received or isinstance(exc, _Unanswered):
                raise
            raise _Unanswered(str(exc)) from exc

    async def chunks(self) -> AsyncIterator[bytes]:
        """The answer's body, as it arrives."""
        while True:
            kind, value = await self._next_event()
            if kind == "body":
                yield value
            elif kind == "end":
                self._in_flight = False
                return
            else:
                raise ProtocolError(f"unexpected {kind} in an answer's body")

    async def read_body(self) -> bytes:
        parts = [chunk async for chunk in self.chunks()]
        return b"".join(parts)

    async def aclose(self) -> None:
        await self.stream.aclose()

    async def _next_event(self) -> tuple[str, Any]:
        while not self._events:
            data = await self.stream.receive()
            if not data:
                if not self._received:
                    raise _Unanswered("the server closed the connection without answering")
                raise ProtocolError("the server closed the connection mid-answer")
            self._received = True
            assert self._parser is not None
            try:
                self._parser.feed_data(data)
            except httptools.HttpParserUpgrade as exc:
                raise ProtocolError("the engine switched protocols on a plain request") from exc
            except httptools.HttpParserError as exc:
                raise ProtocolError(f"the engine's answer is not valid HTTP/1.1: {exc}") from exc
        return self._events.popleft()

    # -- httptools' callbacks -------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        assert self._parser is not None
        self._keep_alive = self._parser.should_keep_alive()
        self._events.append(("head", (self._parser.get_status_code(), self._headers)))
        self._headers = []

    def on_body(self, body: bytes) -> None:
        self._events.append(("body", body))

    def on_message_complete(self) -> None:
        self._events.append(("end", None))


def _request_head(method: str, target: str, headers: list[tuple[bytes, bytes]]) -> bytes:
    """The request line and headers. Values come from dirk and its configuration; one that
    would end its line early (CR, LF, NUL) is refused rather than sent."""
    lines = [f"{method} {target} HTTP/1.1".encode("ascii")]
    for name, value in headers:
        if _BREAKS_LINE.search(name) or _BREAKS_LINE.search(value) or b":" in name:
            raise ValueError(f"the HTTP header {name!r} would break the request's framing")
        lines.append(name + b": " + value)
    if _BREAKS_LINE.search(lines[0]):
        raise ValueError(f"the request target {target!r} would break the request's framing")
    return b"\r\n".join(lines) + b"\r\n\r\n"


#: What must not appear inside one line of a request's head.
_BREAKS_LINE = re.compile(rb"[\r\n\x00]")


# --- pools ---------------------------------------------------------------------------------


class Pool:
    """Connections to one engine address, reused between requests.

    `blocking=True`: sockets block and every coroutine here runs to its end without suspending
    (drive it with `dirk.wire.io.drive`); thread-safe. `blocking=False`: anyio sockets, for one
    event loop. `uds` is a unix socket path; otherwise `base_url`'s host and port are used.
    """

    def __init__(
        self,
        base_url: str,
        *,
        uds: str | None = None,
        blocking: bool,
        connect_timeout: float,
        read_timeout: float | None,
        headers: Mapping[str, str] | None = None,
        max_connections: int = 100,
        max_idle: int = 20,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        scheme, _, rest = base_url.partition("://")
        hostport = rest.split("/", 1)[0]
        host, _, port = hostport.rpartition(":")
        if not host or not port.isdigit():
            host, port = hostport, "443" if scheme == "https" else "80"
        self.tls = scheme == "https"
        self.host = host.strip("[]")
        self.port = int(port)
        self.host_header = hostport.encode()
        self.uds = uds
        self.blocking = blocking
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.headers = [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
        self.max_idle = max_idle
        self._ssl_context = ssl_context
        self._idle: list[Connection] = []
        self._lock = threading.Lock()
        self._max_connections = max_connections
        self._slots_sync = threading.BoundedSemaphore(max_connections) if blocking else None
        self._slots_async: Any = None  # an anyio.Semaphore, made inside the event loop
        self.closed = False

    # -- public ---------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """One whole request and answer; `TransportError` when the exchange fails."""
        body = b"" if json_body is None else json.dumps(json_body).encode()
        extra = [(b"Content-Type", b"application/json")] if json_body is not None else []
        async with self._slot():
            for attempt in range(2):
                conn, reused = await self._checkout()
                try:
                    status, head = await conn.start(
                        method, path, self._headers(headers, extra), body
                    )
                    data = await conn.read_body()
                except _Unanswered:
                    await conn.aclose()
                    if reused and attempt == 0:
                        continue  # the engine closed an idle connection as we reused it
                    raise
                except BaseException:
                    await conn.aclose()  # cut short (error, timeout, cancel, Ctrl-C): not reused
                    raise
                await self._checkin(conn)
                return Response(status, head, data)
        raise AssertionError("unreachable")

    async def open_stream(
        self, method: str, path: str, *, headers: Mapping[str, str] | None = None
    ) -> tuple[Connection, int, list[tuple[bytes, bytes]]]:
        """A request whose answer's body the caller reads (`Connection.chunks`) and whose
        connection it then closes (`aclose`); not counted among the pool's connections."""
        conn = await self._connect()
        try:
            status, head = await conn.start(method, path, self._headers(headers, []), b"")
        except BaseException:
            await conn.aclose()
            raise
        return conn, status, head

    async def aclose(self) -> None:
        """Closes the idle connections; requests in flight close theirs when they end."""
        self.closed = True
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            await conn.aclose()

    # -- internals ------------------------------------------------------------------------

    def _headers(
        self, headers: Mapping[str, str] | None, extra: list[tuple[bytes, bytes]]
    ) -> list[tuple[bytes, bytes]]:
        out = [(b"Host", self.host_header), (b"User-Agent", USER_AGENT), *self.headers, *extra]
        out += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
        return out

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        if self._slots_sync is not None:
            with self._slots_sync:
                yield
            return
        if self._slots_async is None:
            import anyio

            self._slots_async = anyio.Semaphore(self._max_connections)
        async with self._slots_async:
            yield

    async def _checkout(self) -> tuple[Connection, bool]:
        """A connection, and whether it served a request before."""
        if self.closed:
            raise TransportError("the HTTP client is closed")
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return await self._connect(), False
            if conn.stream.readable():  # the engine closed it while idle (or sent garbage)
                await conn.aclose()
                continue
            return conn, True

    async def _checkin(self, conn: Connection) -> None:
        if not conn.reusable or self.closed:
            await conn.aclose()
            return
        with self._lock:
            if len(self._idle) < self.max_idle:
                self._idle.append(conn)
                return
        await conn.aclose()

    async def _connect(self) -> Connection:
        if self.blocking:
            return Connection(SyncStream(self._connect_sync(), self.read_timeout))
        return Connection(_AsyncStream(await self._connect_async(), self.read_timeout))

    def _connect_sync(self) -> socket.socket:
        try:
            if self.uds is not None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.settimeout(self.connect_timeout)
                    sock.connect(self.uds)
                except BaseException:
                    sock.close()
                    raise
            else:
                # An ASCII name goes as bytes (getaddrinfo takes them; typeshed says str): a
                # str would import the idna codec, a millisecond of every program's start.
                host: Any = self.host.encode("ascii") if self.host.isascii() else self.host
                sock = socket.create_connection((host, self.port), self.connect_timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except TimeoutError as exc:
            raise ConnectTimeout(f"timed out connecting to {self._where()}") from exc
        except OSError as exc:
            raise ConnectError(f"cannot connect to {self._where()}: {exc}") from exc
        if self.tls:
            try:
                sock = self._tls().wrap_socket(sock, server_hostname=self.host)
            except OSError as exc:
                sock.close()
                raise ConnectError(f"TLS with {self._where()} failed: {exc}") from exc
        return sock

    async def _connect_async(self) -> anyio.abc.ByteStream:
        import anyio

        try:
            with anyio.fail_after(self.connect_timeout):
                if self.uds is not None:
                    return await anyio.connect_unix(self.uds)
                if self.tls:
                    return await anyio.connect_tcp(
                        self.host, self.port, tls=True, ssl_context=self._tls()
                    )
                return await anyio.connect_tcp(self.host, self.port)
        except TimeoutError as exc:
            raise ConnectTimeout(f"timed out connecting to {self._where()}") from exc
        except OSError as exc:
            raise ConnectError(f"cannot connect to {self._where()}: {exc}") from exc

    def _tls(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            import ssl

            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    def _where(self) -> str:
        return self.uds if self.uds is not None else f"{self.host}:{self.port}"
