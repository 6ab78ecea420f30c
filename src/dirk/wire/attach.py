"""The attach connection: `GET /sessions/<token>/attach`, held open for as long as this program
wants its session, so that the engine ends the session when the program dies (the kernel
closes a killed program's socket).

It is a `SessionStream` (a daemon thread of its own, nothing of the caller's event loop).
Create it with `attach_session`; `close` it after `DELETE`. If the engine goes away first, the
thread ends quietly: the next query reports the engine's absence.
"""

from __future__ import annotations

from dirk import lazylog
from dirk.errors import ClientConnectionError
from dirk.wire import http
from dirk.wire.client import CONTROL_TIMEOUT, EngineAddress
from dirk.wire.driver import ANYIO, IO
from dirk.wire.session_stream import SessionStream

#: The first line of an attach stream: the engine counts the attach before sending it.
ATTACHED_LINE = '{"attached":true}'


class SessionAttachment(SessionStream):
    """Holds a session's attach connection open (see the module docstring)."""

    path = "attach"
    what = "attach connection"
    refused_as = "to attach to the session"

    @property
    def alive(self) -> bool:
        """Whether the attach connection is open (False once the engine ended the stream)."""
        return self._confirmed.is_set() and self._error is None and self._thread.is_alive()

    def wait_attached(self, timeout: float) -> None:
        """Blocks until the engine counted the attach; raises why it did not."""
        self._wait_confirmed(timeout, "confirm the session's attach connection")

    async def _read(self, conn: http.Connection) -> None:
        buffered = b""
        first: bytes | None = None
        async for chunk in conn.chunks():  # heartbeats, until the engine ends the stream
            if first is None:
                buffered += chunk
                if b"\n" not in buffered:
                    continue
                first = buffered.split(b"\n", 1)[0].rstrip(b"\r")
                if first.decode("utf-8", errors="replace") != ATTACHED_LINE:
                    self._error = ClientConnectionError(
                        f"the server at {self.address} answered the session attach with "
                        f"{first.decode(errors='replace')!r} instead of {ATTACHED_LINE}: "
                        "is it a dirk engine?"
                    )
                    return
                self._confirmed.set()
        if first is None and not self._closing:
            raise http.ProtocolError("the engine ended the attach stream before confirming it")
        if not self._closing:
            lazylog.debug(
                __name__, "the dirk engine at %s ended the session's attach stream", self.address
            )


async def attach_session(
    address: EngineAddress, token: str, timeout: float = CONTROL_TIMEOUT, *, io: IO = ANYIO
) -> SessionAttachment:
    """`GET /sessions/<token>/attach`, held open until `close()`: from then on the engine ends
    the session when this program dies. Returns once the engine counted the attach."""
    attachment = SessionAttachment(address, token)
    attachment.start()
    try:
        await io.call_blocking(attachment.wait_attached, timeout)
    except BaseException:
        attachment.close(timeout=0)
        raise
    return attachment
