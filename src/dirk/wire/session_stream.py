"""A long-lived `GET /sessions/<token>/<stream>` read in a daemon thread of its own.

Both streams a client holds on a session work this way: the attach connection (`client.py`:
the engine ends the session when it drops) and the event stream (`event_client.py`: the
session's step events). Neither needs anything of the caller's event loop, so a sync-mode
program, `dirk run` and `dirk session` use them alike, and each dies with the process.

`SessionStream` opens the stream, reports why the engine refused it, waits for the engine's
first confirmation (`_confirmed`), and closes it from any thread; a subclass reads the body.
"""

from __future__ import annotations

import contextlib
import socket
import threading

from dirk import lazylog
from dirk.errors import ClientConnectionError, SessionAuthError
from dirk.wire import http
from dirk.wire.client import EngineAddress, _pool, _unreachable
from dirk.wire.driver import drive


class SessionStream:
    """One stream of one session (see the module docstring). `start`, then `_wait_confirmed`;
    `close` drops it and waits briefly for the thread."""

    #: The path's last part (`attach`, `events`), how messages name the stream, and what a
    #: refusal of the token says the engine refused.
    path = ""
    what = ""
    refused_as = ""

    def __init__(self, address: EngineAddress, token: str) -> None:
        self.address = address
        self._token = token
        self._confirmed = threading.Event()
        self._error: ClientConnectionError | None = None
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._closing = False
        self._thread = threading.Thread(
            target=self._run, name=f"dirk-{self.path}-{token[:8]}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout: float = 1.0) -> None:
        """Drops the connection and waits up to `timeout` seconds for the thread to end."""
        with self._lock:
            self._closing = True
            sock = self._socket
        if sock is not None:
            with contextlib.suppress(OSError):  # wakes the thread's read; it closes the socket
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _wait_confirmed(self, timeout: float, late: str) -> None:
        """Blocks until the engine confirmed the stream; raises why it did not (`late`: what
        to say when it took longer than `timeout`)."""
        if not self._confirmed.wait(timeout):
            self.close(0)
            raise ClientConnectionError(
                f"the dirk engine at {self.address} did not {late} within {timeout:g} s; "
                "is it overloaded or stuck? See its engine.log"
            )
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        try:
            drive(self._open_and_read())
        except Exception as exc:  # never a traceback from a background thread
            if not self._confirmed.is_set():
                self._error = _unreachable(self.address, exc)
            elif not self._closing:
                lazylog.debug(__name__, "the %s of %s broke: %s", self.what, self.address, exc)
        finally:
            self._confirmed.set()

    async def _open_and_read(self) -> None:
        pool = _pool(self.address, blocking=True, read_timeout=None)  # idle streams are normal
        headers = {"Authorization": http.basic_auth(self._token)}
        conn, status, _ = await pool.open_stream(
            "GET", f"/sessions/{self._token}/{self.path}", headers=headers
        )
        try:
            if status != 200:
                body = await conn.read_body()
                self._error = self._refused(http.Response(status, [], body))
                return
            sock = conn.stream.sock if isinstance(conn.stream, http.SyncStream) else None
            with self._lock:
                self._socket = sock
                if self._closing:
                    return
            await self._read(conn)
        finally:
            await conn.aclose()

    def _refused(self, response: http.Response) -> ClientConnectionError:
        """The error for an answer other than 200: a 401 means the session is gone."""
        if response.status == 401:
            return SessionAuthError(
                f"the dirk engine at {self.address} refused {self.refused_as}: the session has "
                "ended (engine restarted?) or the token is wrong; open a new dirk.Connection"
            )
        return ClientConnectionError(
            f"the dirk engine at {self.address} answered HTTP {response.status} to the "
            f"session's {self.what}: {response.text[:200]!r}; is the engine older than this "
            "client? Restart it"
        )

    async def _read(self, conn: http.Connection) -> None:
        """Reads the open stream until it ends (or `close` cuts it)."""
        raise NotImplementedError
