"""The viewer's side of `GET /sessions/<token>/events`: the session's step events, one JSON
object per line, handed to a callback as they arrive.

The stream is read in a daemon thread of its own, as the attach connection is (both are a
`SessionStream`): a sync-mode SDK program, `dirk run` and `dirk session` all use it the same
way, and a renderer that blocks on a slow terminal only delays its own thread (the engine
drops what this reader cannot take, and says so).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from dirk.wire import http
from dirk.wire.client import CONTROL_TIMEOUT, EngineAddress
from dirk.wire.driver import ANYIO, IO
from dirk.wire.session_stream import SessionStream

#: One record of the stream (see ARCHITECTURE.md, "Step events").
EventRecord = dict[str, Any]
OnRecord = Callable[[EventRecord], None]


class EventStream(SessionStream):
    """A subscription to one session's events; `start`, then `wait_subscribed`; `finish`
    waits for the engine to end the stream (the session ended), `close` drops it."""

    path = "events"
    what = "event stream"
    refused_as = "the session's event stream"

    def __init__(self, address: EngineAddress, token: str, on_record: OnRecord) -> None:
        super().__init__(address, token)
        self._on_record = on_record
        self.ended = False

    def wait_subscribed(self, timeout: float) -> None:
        """Blocks until the engine counts the subscription (events from then on are seen)."""
        self._wait_confirmed(timeout, "start the session's event stream")

    def finish(self, timeout: float) -> bool:
        """Waits up to `timeout` seconds for the stream's end (every event delivered); then
        drops it. True when the engine ended it."""
        self._thread.join(timeout)
        ended = self.ended
        self.close(0)
        return ended

    async def _read(self, conn: http.Connection) -> None:
        buffered = b""
        async for chunk in conn.chunks():
            buffered += chunk
            *lines, buffered = buffered.split(b"\n")
            for line in lines:
                if line.strip() and self._line(line):
                    return

    def _line(self, line: bytes) -> bool:
        """Handle one line of the stream; True at its end."""
        record = json.loads(line)
        kind = record.get("type") if isinstance(record, dict) else None
        if kind == "subscribed":
            self._confirmed.set()
        elif kind == "ended":
            self.ended = True
            return True
        elif kind is not None:
            self._on_record(record)
        return False


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
