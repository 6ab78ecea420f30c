"""The viewer's side of `GET /sessions/<token>/events`: the session's step events, one JSON
object per line, handed to a callback as they arrive.

The stream is read in a daemon thread of its own, as the attach connection is (`client.py`):
it needs nothing of the caller's event loop, so a sync-mode SDK program, `dirk run` and
`dirk session` all use it the same way, and a renderer that blocks on a slow terminal only
delays its own thread (the engine drops what this reader cannot take, and says so).
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

from dirk.errors import ClientConnectionError, SessionAuthError
from dirk.wire import http
from dirk.wire.client import CONTROL_TIMEOUT, EngineAddress, _pool, _unreachable
from dirk.wire.driver import ANYIO, IO, drive

log = logging.getLogger(__name__)

#: One record of the stream (see ARCHITECTURE.md, "Step events").
EventRecord = dict[str, Any]
OnRecord = Callable[[EventRecord], None]


class EventStream:
    """A subscription to one session's events; `start`, then `wait_subscribed`; `finish`
    waits for the engine to end the stream (the session ended), `close` drops it."""

    def __init__(self, address: EngineAddress, token: str, on_record: OnRecord) -> None:
        self.address = address
        self._token = token
        self._on_record = on_record
        self._subscribed = threading.Event()
        self._error: ClientConnectionError | None = None
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._closing = False
        self.ended = False
        self._thread = threading.Thread(
            target=self._run, name=f"dirk-events-{token[:8]}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def wait_subscribed(self, timeout: float) -> None:
        """Blocks until the engine counts the subscription (events from then on are seen)."""
        if not self._subscribed.wait(timeout):
            self.close(0)
            raise ClientConnectionError(
                f"the dirk engine at {self.address} did not start the session's event stream "
                f"within {timeout:g} s; is it overloaded? See its engine.log"
            )
        if self._error is not None:
            raise self._error

    def finish(self, timeout: float) -> bool:
        """Waits up to `timeout` seconds for the stream's end (every event delivered); then
        drops it. True when the engine ended it."""
        self._thread.join(timeout)
        ended = self.ended
        self.close(0)
        return ended

    def close(self, timeout: float = 1.0) -> None:
        with self._lock:
            self._closing = True
            sock = self._socket
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            drive(self._read())
        except Exception as exc:  # never a traceback from a background thread
            if not self._subscribed.is_set():
                self._error = _unreachable(self.address, exc)
            elif not self._closing:
                log.debug("the event stream of %s broke: %s", self.address, exc)
        finally:
            self._subscribed.set()

    async def _read(self) -> None:
        pool = _pool(self.address, blocking=True, read_timeout=None)  # idle streams are normal
        headers = {"Authorization": http.basic_auth(self._token)}
        conn, status, _ = await pool.open_stream(
            "GET", f"/sessions/{self._token}/events", headers=headers
        )
        try:
            if status != 200:
                body = await conn.read_body()
                self._error = _refused(http.Response(status, [], body), self.address)
                return
            sock = conn.stream.sock if isinstance(conn.stream, http.SyncStream) else None
            with self._lock:
                self._socket = sock
                if self._closing:
                    return
            buffered = b""
            async for chunk in conn.chunks():
                buffered += chunk
                *lines, buffered = buffered.split(b"\n")
                for line in lines:
                    if line.strip() and self._line(line):
                        return
        finally:
            await conn.aclose()

    def _line(self, line: bytes) -> bool:
        """Handle one line of the stream; True at its end."""
        record = json.loads(line)
        kind = record.get("type") if isinstance(record, dict) else None
        if kind == "subscribed":
            self._subscribed.set()
        elif kind == "ended":
            self.ended = True
            return True
        elif kind is not None:
            self._on_record(record)
        return False


def _refused(response: http.Response, address: EngineAddress) -> ClientConnectionError:
    if response.status == 401:
        return SessionAuthError(
            f"the dirk engine at {address} refused the session's event stream: the session "
            "has ended or the token is wrong"
        )
    return ClientConnectionError(
        f"the dirk engine at {address} answered HTTP {response.status} to the event "
        f"stream: {response.text[:200]!r}; is the engine older than this client? Restart it"
    )


async def subscribe_events(
    address: EngineAddress,
    token: str,
    on_record: OnRecord,
    timeout: float = CONTROL_TIMEOUT,
    *,
    io: IO = ANYIO,
) -> EventStream:
    """Subscribes to a session's events; returns once the engine counts the subscription,
    so every step of a query sent afterwards reaches `on_record` (in the stream's thread)."""
    events = EventStream(address, token, on_record)
    events.start()
    try:
        await io.call_blocking(events.wait_subscribed, timeout)
    except BaseException:
        events.close(0)
        raise
    return events
