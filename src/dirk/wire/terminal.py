"""`GET /sessions/<token>/terminal`: a websocket through which a client holds the session's
terminal (HTTP Basic auth with the session token, as every session route).

`?onFailure=1` also asks for a shell in each failed exec (`dirk run -i`). One connection at
a time holds a session's terminal; shells take turns on it. Messages:

- engine to client, text (JSON): `{"type": "ready"}` once the connection holds the terminal
  (or `{"type": "error", "message": ...}` and a close); `{"type": "open", "title": ...,
  "command": [...]}` when a shell starts; `{"type": "exit", "code": N}` when it has ended
  (`code` null when it did not run to its end). Binary: the shell's output.
- client to engine: after an "open", text `{"type": "size", "rows": R, "cols": C}` first and
  whenever the window changes; binary: what the user types.

The connection ends when the client closes it or the session ends; an open shell's container
is killed then. What a shell prints is relayed as is: the user's own session is not scrubbed
of secret values.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.web import WSMsgType

from dirk.errors import TerminalError
from dirk.wire.errors import error_body
from dirk.workers.executor.pty import WindowSize

if TYPE_CHECKING:
    from dirk.engine.sessions import Session

#: Seconds between websocket pings: a client that vanished is noticed within two of them.
HEARTBEAT_S = 10.0
ON_FAILURE_PARAM = "onFailure"


def add_terminal_route(
    app: web.Application, owned_session: Callable[[web.Request], Session | None]
) -> None:
    """Serve the terminal websocket; `owned_session` checks the request's credentials."""

    async def terminal(request: web.Request) -> web.StreamResponse:
        session = owned_session(request)
        if session is None:
            return web.json_response(
                error_body("unknown session token: the session has ended or never existed"),
                status=401,
            )
        return await serve_terminal(request, session)

    app.router.add_get("/sessions/{token}/terminal", terminal)


async def serve_terminal(request: web.Request, session: Session) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=1 << 20)
    await ws.prepare(request)
    on_failure = request.query.get(ON_FAILURE_PARAM, "") in ("1", "true")
    try:
        holder = session.terminals.connect(ws.send_json, ws.send_bytes, on_failure)
    except TerminalError as exc:
        await ws.send_json({"type": "error", "message": str(exc)})
        await ws.close()
        return ws
    closer = asyncio.ensure_future(_close_when_ended(session, ws))
    try:
        await ws.send_json({"type": "ready"})
        async for message in ws:
            if message.type == WSMsgType.BINARY:
                holder.deliver(message.data)
            elif message.type == WSMsgType.TEXT:
                size = _window_size(message.data)
                if size is not None:
                    holder.deliver(size)
    except ConnectionError:
        pass
    finally:
        session.terminals.release(holder)
        closer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await closer
    return ws


async def _close_when_ended(session: Session, ws: web.WebSocketResponse) -> None:
    await session.wait_ended()
    await ws.close()


def _window_size(text: str) -> WindowSize | None:
    """The size a `{"type": "size", ...}` message gives; None for anything else."""
    try:
        message = json.loads(text)
    except ValueError:
        return None
    if not isinstance(message, dict) or message.get("type") != "size":
        return None
    return WindowSize.checked(message.get("rows"), message.get("cols"))
