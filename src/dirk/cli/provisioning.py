"""The CLI's side of provisioning: open a session exactly as the SDK does, and end it.

`dirk session` and `dirk run` must reach the same engine a dirk SDK program would, so they use
the SDK's provisioning (`dirk.sdk.provision`): join the session of an enclosing `dirk run`,
or DIRK_ENGINE, or the local engine (started when it is not running).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import attrs


@attrs.frozen
class CliSession:
    """An open session: the engine's TCP port, the token, and how to end it (a joined session
    is left open: it belongs to whoever opened it)."""

    port: int
    token: str
    close: Callable[[], Awaitable[None]]


async def open_session(workdir: Path, labels: Mapping[str, str]) -> CliSession:
    from dirk.sdk import provision

    info = await provision.open_session(workdir, labels)

    async def close() -> None:
        await provision.close_session(info)

    return CliSession(port=info.port, token=info.token, close=close)
