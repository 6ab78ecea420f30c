"""The client side of `GET /sessions/<token>/terminal` (see `wire.terminal` for the messages).

`TerminalConnection` holds a session's terminal and turns the engine's messages into
events: a shell opens (`ShellOpened`), prints (bytes), ends (`ShellExited`). What to do with
them, a real tty, is the SDK's business (`sdk.terminal`).
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import AsyncIterator

import aiohttp
import attrs

from dirk.errors import ClientConnectionError, TerminalError
from dirk.wire.client import EngineAddress
from dirk.wire.terminal import HEARTBEAT_S, ON_FAILURE_PARAM


@attrs.frozen
class ShellOpened:
    title: str
    command: tuple[str, ...]


@attrs.frozen
class ShellExited:
    #: None when the shell did not run to its end (its container was stopped).
    code: int | None


TerminalEvent = ShellOpened | ShellExited | bytes


class TerminalConnection:
    """A websocket holding one session's terminal."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws

    async def events(self) -> AsyncIterator[TerminalEvent]:
        """What the engine sends, until the connection closes."""
        async for message in self._ws:
            if message.type == aiohttp.WSMsgType.BINARY:
                yield bytes(message.data)
            elif message.type == aiohttp.WSMsgType.TEXT:
                event = _event(message.data)
                if event is not None:
                    yield event

    async def send_input(self, data: bytes) -> None:
        await self._ws.send_bytes(data)

    async def send_size(self, rows: int, cols: int) -> None:
        await self._ws.send_json({"type": "size", "rows": rows, "cols": cols})


def _event(text: str) -> ShellOpened | ShellExited | None:
    try:
        message = json.loads(text)
    except ValueError:
        return None
    if not isinstance(message, dict):
        return None
    if message.get("type") == "open":
        command = message.get("command") or []
        return ShellOpened(str(message.get("title", "")), tuple(str(a) for a in command))
    if message.get("type") == "exit":
        code = message.get("code")
        return ShellExited(code if isinstance(code, int) else None)
    return None


@contextlib.asynccontextmanager
async def connect_terminal(
    address: EngineAddress, token: str, *, on_failure: bool = False
) -> AsyncIterator[TerminalConnection]:
    """Hold the session's terminal for the block; it is held once this yields. `on_failure`
    also asks for a shell in each failed exec (`dirk run -i`)."""
    connector = aiohttp.UnixConnector(path=address.uds) if address.uds else None
    params = {ON_FAILURE_PARAM: "1"} if on_failure else {}
    url = f"{address.base_url}/sessions/{token}/terminal"
    basic = base64.b64encode(f"{token}:".encode()).decode()
    async with aiohttp.ClientSession(
        connector=connector, headers={"Authorization": f"Basic {basic}"}, trust_env=False
    ) as http:
        try:
            ws = await http.ws_connect(url, params=params, heartbeat=HEARTBEAT_S)
        except (aiohttp.ClientError, OSError) as exc:
            raise ClientConnectionError(
                f"could not hold the session's terminal at {address}: {exc}"
            ) from exc
        async with ws:
            first = await ws.receive()
            event = json.loads(first.data) if first.type == aiohttp.WSMsgType.TEXT else {}
            if not isinstance(event, dict) or event.get("type") != "ready":
                message = event.get("message") if isinstance(event, dict) else None
                raise TerminalError(str(message or "the engine refused to attach a terminal"))
            yield TerminalConnection(ws)
