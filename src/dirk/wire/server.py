"""The engine's HTTP front: health, sessions and GraphQL queries, every answer JSON.

Routes (see the wire contract): `GET /health`; `POST /sessions` and `GET /sessions` (the
list, for operators and tests), both on the unix socket or over TCP with the admin token;
`DELETE /sessions/<token>`; `GET /sessions/<token>/attach` (held open by the program that owns
the session: when its last attach drops, the session ends); `GET /sessions/<token>/terminal`
(a websocket holding the session's terminal, `wire.terminal`); `GET /sessions/<token>/events`
(its step events, streamed as JSON lines to progress views); `POST /query` with HTTP Basic auth,
the session token as user name, exactly what the official Dagger SDKs send. A query runs for as
long as its evaluation takes: nothing times out on this side, and one session may run many at
once.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import ctypes
import gc
import hmac
import json
import logging
import socket
import struct
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from inspect import isawaitable
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

from aiohttp import web
from graphql import (
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    GraphQLSchema,
    execute,
    validate,
)

from dirk import timing
from dirk.errors import DirkError, QueryLimitError, SolveError
from dirk.wire.errors import error_body, format_error, leaves
from dirk.wire.limits import QueryLimits
from dirk.wire.shapes import ValidShapes, shape_of
from dirk.wire.terminal import add_terminal_route
from dirk.wire.turns import TurnTakingExecutor
from dirk.workers.hostaccess import HostUser

if TYPE_CHECKING:  # the registry is handed in: serving does not import the engine
    from dirk.engine.sessions import Session, SessionRegistry

log = logging.getLogger(__name__)

#: Builds the `context_value` resolvers see (dirk.api.RequestContext) for one request.
ContextFactory: TypeAlias = "Callable[[Session], object]"


class RequestTracer(Protocol):
    """Spans of requests (`dirk.engine.telemetry`), when tracing is on."""

    def request(
        self, headers: Mapping[str, str], name: str, session: str
    ) -> contextlib.AbstractContextManager[None]: ...


REALM = 'Basic realm="dirk"'
#: Bodies can carry file contents (`withNewFile`); aiohttp's default of 1 MiB is too small.
MAX_BODY_BYTES = 64 * 1024 * 1024
#: Parsed and validated documents kept, by query text (leaf queries repeat whole chains), up
#: to this many characters of query text in all; a larger query is parsed anew each time.
DOCUMENT_CACHE_CHARS = 32 * 1024 * 1024
DOCUMENT_CACHE_ENTRY_CHARS = 1024 * 1024
#: Shapes of validated documents kept (`wire/shapes.py`), in characters of shape in all.
VALID_SHAPES_CHARS = 8 * 1024 * 1024
#: Queries up to this size are parsed on the event loop (it costs less than a thread hop);
#: larger ones in a worker thread, one at a time per session, so no session stalls the others.
INLINE_PARSE_CHARS = 16 * 1024
#: Seconds between checks that an attached client is still connected. aiohttp tells a handler
#: nothing when its peer goes away (unless handler cancellation is on), but the request's
#: transport closes at once on the peer's FIN/RST, so a cheap check finds a killed client fast.
ATTACH_POLL_S = 0.1
#: Seconds between checks that a query's client is still connected, once it has run that
#: long: a query whose client went away (it cancelled the request, it was killed) is
#: cancelled as Dagger does, so `Service.up` and other long calls end with their request.
QUERY_POLL_S = 0.5
#: Seconds between heartbeat lines on an attach stream: they keep proxies from closing an idle
#: stream and make a peer that vanished without closing (a remote host lost) fail a write.
ATTACH_HEARTBEAT_S = 5.0
#: Seconds an idle event stream waits before checking that its viewer is still connected.
EVENTS_POLL_S = 0.5
#: Seconds an event stream gathers events before writing them: a view redrawn 20 times a
#: second shows nothing later, and a busy pipeline costs one write per batch, not per event.
EVENTS_BATCH_S = 0.05
#: The first and last lines of an event stream (the records between are the hub's).
SUBSCRIBED_LINE = b'{"type":"subscribed"}\n'
ENDED_LINE = b'{"type":"ended"}\n'
#: Milliseconds written heartbeats may stay unacknowledged before the kernel drops a TCP attach
#: connection (TCP_USER_TIMEOUT), so a lost remote client is noticed in about half a minute.
ATTACH_TCP_USER_TIMEOUT_MS = 30_000


class WireServer:
    """Serves one engine's GraphQL schema to its sessions over HTTP."""

    def __init__(
        self,
        schema: GraphQLSchema,
        sessions: SessionRegistry,
        *,
        context_factory: ContextFactory,
        admin_token: str,
        version: str,
        port: int = 0,
        limits: QueryLimits | None = None,
        tracer: Callable[[], RequestTracer | None] = lambda: None,
    ) -> None:
        self.schema = schema
        #: The engine's request tracer now (None while tracing is off).
        self.tracer = tracer
        self.sessions = sessions
        self.context_factory = context_factory
        self.admin_token = admin_token
        self.version = version
        #: The engine's TCP port, told to new sessions; set once the daemon has bound it.
        self.port = port
        self.limits = limits or QueryLimits.from_env()
        self._documents: OrderedDict[str, DocumentNode | list[GraphQLError]] = OrderedDict()
        self._document_chars = 0
        self._valid_shapes = ValidShapes(VALID_SHAPES_CHARS, DOCUMENT_CACHE_ENTRY_CHARS)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[_json_errors])
        app.router.add_get("/health", self.health)
        app.router.add_post("/sessions", self.create_session)
        app.router.add_get("/sessions", self.list_sessions)
        app.router.add_delete("/sessions/{token}", self.delete_session)
        app.router.add_get("/sessions/{token}/attach", self.attach_session)
        app.router.add_get("/sessions/{token}/events", self.session_events)
        app.router.add_post("/query", self.query)
        add_terminal_route(app, self._owned_session)
        app.on_shutdown.append(self._end_sessions)
        return app

    async def _end_sessions(self, app: web.Application) -> None:
        """At shutdown: cancel running queries (they answer "session ended") and clean up."""
        await self.sessions.end_all()

    # --- handlers --------------------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"version": self.version})

    async def create_session(self, request: web.Request) -> web.Response:
        if not (_on_unix_socket(request) or self._is_admin(request)):
            return _unauthorized(
                "creating a session over TCP needs the engine's admin token "
                "(header `Authorization: Bearer <admin_token>`, from engine.json)",
                realm='Bearer realm="dirk"',
            )
        body = await _json_body(request)
        if isinstance(body, web.Response):
            return body
        workdir = body.get("workdir")
        labels = body.get("labels") or {}
        if not isinstance(workdir, str) or not PurePosixPath(workdir).is_absolute():
            return _bad_request(
                f'"workdir" must be an absolute path on the engine host, got {workdir!r}'
            )
        if not isinstance(labels, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
        ):
            return _bad_request('"labels" must be an object of strings to strings')
        env = body.get("env") or {}
        if not isinstance(env, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in env.items()
        ):
            return _bad_request('"env" must be an object of strings to strings')
        explain = body.get("explain", False)
        if not isinstance(explain, bool):
            return _bad_request('"explain" must be true or false')
        owner = _session_owner(request, body)
        if isinstance(owner, web.Response):
            return owner
        session = self.sessions.create(
            Path(workdir), labels, env, owner, explain=explain, engine_port=self.port
        )
        return web.json_response(
            {"token": session.token, "port": self.port, "version": self.version}
        )

    async def list_sessions(self, request: web.Request) -> web.Response:
        """The live sessions, each named by its token's first 8 characters (never the token)."""
        if not (_on_unix_socket(request) or self._is_admin(request)):
            return _unauthorized(
                "listing sessions over TCP needs the engine's admin token "
                "(header `Authorization: Bearer <admin_token>`, from engine.json)",
                realm='Bearer realm="dirk"',
            )
        return web.json_response(
            {
                "sessions": [
                    {
                        "id": s.token[:8],
                        "workdir": str(s.workdir),
                        "labels": s.labels,
                        "created": s.created,
                        "running": s.running,
                        "attached": s.attached,
                    }
                    for s in self.sessions.all()
                ]
            }
        )

    async def delete_session(self, request: web.Request) -> web.Response:
        session = self._owned_session(request)
        if session is None:
            return _unauthorized("unknown session token: the session has ended or never existed")
        await self.sessions.end(session.token)
        return web.json_response({})

    async def attach_session(self, request: web.Request) -> web.StreamResponse:
        """Holds the session for as long as this request's connection lives.

        Answers a stream of JSON lines: `{"attached":true}` at once, `{}` as a heartbeat, and
        `{"ended":true}` when the session ends otherwise (DELETE, engine stopping). When the
        connection drops and it was the session's last attach, the session ends.
        """
        session = self._owned_session(request)
        if session is None:
            return _unauthorized("unknown session token: the session has ended or never existed")
        response = web.StreamResponse(
            headers={"Content-Type": "application/x-ndjson", "Cache-Control": "no-store"}
        )
        response.force_close()  # one attach per connection: it ends when its session does
        await response.prepare(request)
        _limit_unacknowledged_time(request)
        self.sessions.attach(session)
        try:
            await response.write(b'{"attached":true}\n')
            while await _wait_peer_or_end(request, session, ATTACH_HEARTBEAT_S):
                await response.write(b"{}\n")
            if session.ended:
                await response.write(b'{"ended":true}\n')
                await response.write_eof()
        except ConnectionError:  # the client is gone: detaching below ends its session
            pass
        finally:
            self.sessions.detach(session)
        return response

    async def session_events(self, request: web.Request) -> web.StreamResponse:
        """The session's step events as they happen, one JSON object per line (see the event
        hub, `engine/event_hub.py`): `{"type":"subscribed"}` once the subscription counts,
        then step and output records (and `dropped` ones when this reader fell behind), and
        `{"type":"ended"}` when the session ends. Reading it never slows the engine."""
        session = self._owned_session(request)
        if session is None:
            return _unauthorized("unknown session token: the session has ended or never existed")
        response = web.StreamResponse(
            headers={"Content-Type": "application/x-ndjson", "Cache-Control": "no-store"}
        )
        response.force_close()
        await response.prepare(request)
        subscriber = session.hub.subscribe()
        try:
            await response.write(SUBSCRIBED_LINE)
            while not _peer_gone(request):
                await subscriber.wait(EVENTS_POLL_S)
                if not subscriber.closed:  # gather what comes next: one write, one wake-up
                    await asyncio.sleep(EVENTS_BATCH_S)
                data = subscriber.take()
                if data:
                    await response.write(data)
                if subscriber.closed:
                    await response.write(ENDED_LINE)
                    await response.write_eof()
                    break
        except ConnectionError:  # the viewer went away
            pass
        finally:
            session.hub.unsubscribe(subscriber)
        return response

    def _owned_session(self, request: web.Request) -> Session | None:
        """The session of the URL's token, if the request may act for it: its token as Basic
        user name, or the admin token."""
        token = request.match_info["token"]
        owner = _basic_user(request)
        allowed = (owner is not None and hmac.compare_digest(owner, token)) or self._is_admin(
            request
        )
        return self.sessions.get(token) if allowed else None

    async def query(self, request: web.Request) -> web.Response:
        token = _basic_user(request)
        session = self.sessions.get(token) if token else None
        if session is None:
            reason = "no session token" if not token else "unknown session token"
            return _unauthorized(
                f"{reason}: send the session token as the HTTP Basic user name "
                "(set DAGGER_SESSION_TOKEN, or connect with the dirk SDK)"
            )
        body = await _json_body(request)
        if isinstance(body, web.Response):
            return body
        query = body.get("query")
        variables = body.get("variables")
        operation = body.get("operationName")
        if not isinstance(query, str):
            return _bad_request('the body needs a "query" string')
        if variables is not None and not isinstance(variables, dict):
            return _bad_request('"variables" must be an object')
        if operation is not None and not isinstance(operation, str):
            return _bad_request('"operationName" must be a string')
        task = asyncio.current_task()
        assert task is not None
        session.track(task)
        started = time.monotonic()
        watch = _CancelWhenClientGone(request, task)
        tracer = self.tracer()
        traced = (
            tracer.request(request.headers, operation or "query", session.token[:8])
            if tracer is not None
            else contextlib.nullcontext()
        )
        timing.start()
        timing.mark("query.received")
        try:
            with traced:
                answer = await self.run_query(session, query, variables, operation)
        except asyncio.CancelledError:
            if watch.fired:
                task.uncancel()  # nobody reads this answer
                answer = error_body("the client went away while this query was running")
            elif not session.ended:
                raise
            else:
                task.uncancel()
                answer = error_body("the session ended while this query was running")
        finally:
            watch.close()
            session.untrack(task)
        log.debug("query in session %s took %.3f s", session.token[:8], time.monotonic() - started)
        if timing.ENABLED:
            timing.mark("query.answered")
            answer = {
                **answer,
                "extensions": {**answer.get("extensions", {}), "timing": timing.collected()},
            }
        text = _dumps(answer)
        del answer
        if len(text) < LARGE_ANSWER_CHARS:
            return web.Response(text=text, content_type="application/json")
        # A large answer (a 200 MB stdout) is sent here, then its memory given back: glibc
        # keeps freed heap pages it could return (the pieces it was made of were small).
        response = web.Response(text=text, content_type="application/json")
        del text
        await response.prepare(request)
        await response.write_eof()
        response.body = b""
        await asyncio.to_thread(give_back_free_memory)
        return response

    # --- GraphQL ---------------------------------------------------------------------------

    async def run_query(
        self,
        session: Session,
        query: str,
        variables: Mapping[str, Any] | None = None,
        operation: str | None = None,
    ) -> dict[str, Any]:
        """Parse, validate and execute one GraphQL request; the answer body, errors included."""
        document = self._cached_document(query)
        if document is None:
            if len(query) <= INLINE_PARSE_CHARS:
                document = self._document(query)
            else:
                async with _parse_turn(session):
                    document = await asyncio.to_thread(self._document, query)
        timing.mark("query.parsed")
        if len(query) > DOCUMENT_CACHE_ENTRY_CHARS:
            # graphql-core links a document's tokens both ways: an uncached large document
            # is freed only by the cycle collector, so it is run once the answer is made.
            try:
                return await self._answer(session, document, variables, operation)
            finally:
                del document
                await asyncio.to_thread(gc.collect)
        return await self._answer(session, document, variables, operation)

    async def _answer(
        self,
        session: Session,
        document: DocumentNode | list[GraphQLError],
        variables: Mapping[str, Any] | None,
        operation: str | None,
    ) -> dict[str, Any]:
        if isinstance(document, list):
            return {"data": None, "errors": [format_error(e) for e in document]}
        result = execute(
            self.schema,
            document,
            context_value=self.context_factory(session),
            variable_values=dict(variables) if variables is not None else None,
            operation_name=operation,
            executor_class=TurnTakingExecutor,
        )
        if isawaitable(result):
            result = await result
        assert isinstance(result, ExecutionResult)
        answer: dict[str, Any] = {"data": result.data}
        if result.errors:
            for error in result.errors:
                _log_resolver_error(error)
            answer["errors"] = [format_error(e) for e in result.errors]
        return answer

    def _cached_document(self, query: str) -> DocumentNode | list[GraphQLError] | None:
        cached = self._documents.get(query)
        if cached is not None:
            self._documents.move_to_end(query)
        return cached

    def _document(self, query: str) -> DocumentNode | list[GraphQLError]:
        """Parsed within the limits and validated; thread-safe (the cache is changed only by
        single dict operations)."""
        try:
            document = self.limits.parse(query)
        except GraphQLError as error:
            return [error]
        except QueryLimitError as error:
            return [GraphQLError(str(error), original_error=error)]
        shape = shape_of(document)
        if shape is not None and shape in self._valid_shapes:
            errors = []  # the same document but for its strings validated before
        else:
            errors = validate(self.schema, document)
            if not errors and shape is not None:
                self._valid_shapes.add(shape)
        entry: DocumentNode | list[GraphQLError] = errors or document
        if len(query) <= DOCUMENT_CACHE_ENTRY_CHARS and query not in self._documents:
            self._documents[query] = entry
            self._document_chars += len(query)
            while self._document_chars > DOCUMENT_CACHE_CHARS and self._documents:
                dropped, _ = self._documents.popitem(last=False)
                self._document_chars -= len(dropped)
        return entry

    def _is_admin(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            value.strip().encode(), self.admin_token.encode()
        )


# --- helpers -------------------------------------------------------------------------------

#: Key in `session.state` of the lock that gives a session one large parse at a time.
_PARSE_TURN = "dirk.wire.parse"


def _parse_turn(session: Session) -> asyncio.Lock:
    """A session's turn at the parsing threads: its large queries are parsed one after the
    other, so one session sending many cannot take every thread from the others."""
    lock = session.state.get(_PARSE_TURN)
    if not isinstance(lock, asyncio.Lock):
        lock = session.state[_PARSE_TURN] = asyncio.Lock()
    return lock


#: Answers from this size on are sent by the handler itself, and freed memory given back after.
LARGE_ANSWER_CHARS = 8 * 1024 * 1024


def give_back_free_memory() -> None:
    """Return the C heap's free pages to the system (glibc's malloc_trim, every arena)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _log_resolver_error(error: GraphQLError) -> None:
    """Failures dirk describes itself are logged in a line; anything else with its traceback."""
    original = error.original_error
    causes = [
        # A SolveError wraps a bug in a step: its cause is what needs the traceback.
        leaf.cause if isinstance(leaf, SolveError) and leaf.cause is not None else leaf
        for leaf in (leaves(original) if original is not None else [])
    ]
    unexpected = [leaf for leaf in causes if not isinstance(leaf, DirkError | GraphQLError)]
    if not unexpected:
        log.info("query error at %s: %s", error.path, error.message)
    for leaf in unexpected:
        log.error(
            "unexpected error at %s: %s",
            error.path,
            leaf,
            exc_info=(type(leaf), leaf, leaf.__traceback__),
        )


def _session_owner(request: web.Request, body: dict[str, Any]) -> HostUser | web.Response:
    """Who a new session belongs to. On the unix socket: the connecting process's user, from
    the kernel (SO_PEERCRED), whatever the body says. Over TCP, where only the admin may open
    sessions: the user the admin names in `"user": {"uid": N, "gid": M}`, else the engine's."""
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is not None and sock.family == socket.AF_UNIX:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, gid = struct.unpack("3i", creds)
        return HostUser.of_uid(uid, gid)
    chosen = body.get("user")
    if chosen is None:
        return HostUser.engine()
    uid, gid = (chosen.get(k) if isinstance(chosen, dict) else None for k in ("uid", "gid"))
    if not isinstance(uid, int) or not _whole(uid) or not (gid is None or _whole(gid)):
        return _bad_request(
            '"user" must be {"uid": N} or {"uid": N, "gid": M} with whole numbers >= 0: the '
            "user whose rights the session's host access has"
        )
    return HostUser.of_uid(uid, gid)


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _on_unix_socket(request: web.Request) -> bool:
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    return sock is not None and sock.family == socket.AF_UNIX


def _peer_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def _wait_peer_or_end(request: web.Request, session: Session, seconds: float) -> bool:
    """Waits up to `seconds`; False as soon as the peer has gone or the session ended."""
    deadline = time.monotonic() + seconds
    while not _peer_gone(request) and not session.ended:
        left = deadline - time.monotonic()
        if left <= 0:
            return True
        try:
            async with asyncio.timeout(min(left, ATTACH_POLL_S)):
                await session.wait_ended()
        except TimeoutError:
            pass
    return False


def _limit_unacknowledged_time(request: web.Request) -> None:
    """TCP_USER_TIMEOUT on a TCP attach: a peer that stops acknowledging is dropped."""
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, ATTACH_TCP_USER_TIMEOUT_MS)


def _basic_user(request: web.Request) -> str | None:
    """The user name of HTTP Basic credentials (the session token); the password is ignored."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user = decoded.partition(":")[0]
    return user or None


async def _json_body(request: web.Request) -> dict[str, Any] | web.Response:
    try:
        body = json.loads(await request.read())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return _bad_request(f"the request body is not JSON: {exc}")
    if not isinstance(body, dict):
        return _bad_request("the request body must be a JSON object")
    return body


def _bad_request(message: str) -> web.Response:
    return web.json_response(error_body(message), status=400)


def _unauthorized(message: str, realm: str = REALM) -> web.Response:
    return web.json_response(error_body(message), status=401, headers={"WWW-Authenticate": realm})


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn aiohttp's own answers (404, 405, 413) and crashes into JSON error bodies."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.text if exc.text and exc.content_type == "text/plain" else exc.reason
        return web.json_response(
            error_body(f"{exc.status} {message}: {request.method} {request.path}"),
            status=exc.status,
            headers={k: v for k, v in exc.headers.items() if k.lower() in ("allow",)},
        )
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.exception("internal error answering %s %s", request.method, request.path)
        return web.json_response(error_body(f"internal engine error: {exc!r}"), status=500)


class _CancelWhenClientGone:
    """Cancels a query's task once its request's connection has closed (checked every
    `QUERY_POLL_S` on a timer, so a short query costs one timer and no task)."""

    def __init__(self, request: web.Request, task: asyncio.Task[Any]) -> None:
        self._request = request
        self._task = task
        self._loop = asyncio.get_running_loop()
        self.fired = False
        self._handle = self._loop.call_later(QUERY_POLL_S, self._check)

    def _check(self) -> None:
        transport = self._request.transport
        if transport is None or transport.is_closing():
            self.fired = True
            self._task.cancel("the client went away")
        else:
            self._handle = self._loop.call_later(QUERY_POLL_S, self._check)

    def close(self) -> None:
        self._handle.cancel()
