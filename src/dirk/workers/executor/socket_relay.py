"""A host unix socket forwarded under another owner (`withUnixSocket(owner:)`).

The host's socket cannot be chowned for a container (it is the host's file, and its owner's
rights would change for everyone), so the engine listens on a socket of its own, owned by the
asked uid:gid with mode 0660, bind-mounts that one into the container, and relays each
connection to the host socket. The relay lives as long as the step's container.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.abc

from dirk.workers.executor.forward import relay_stream

#: Connections waiting to be accepted.
BACKLOG = 128


@contextlib.asynccontextmanager
async def relayed_socket(host_path: Path, uid: int, gid: int, tmp: Path) -> AsyncIterator[Path]:
    """A socket owned by uid:gid (in a fresh directory under `tmp`) whose connections reach
    `host_path`; closed, with its directory, when the block ends."""
    directory = Path(tempfile.mkdtemp(prefix="sock-", dir=tmp))
    path = directory / "socket"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(str(path))
        os.chown(path, uid, gid)
        os.chmod(path, 0o660)
        listener.listen(BACKLOG)
        listener.setblocking(False)
        async with anyio.create_task_group() as tg:
            tg.start_soon(_serve, listener, host_path, tg)
            yield path
            tg.cancel_scope.cancel()
    finally:
        listener.close()
        with contextlib.suppress(OSError):
            path.unlink()
        with contextlib.suppress(OSError):
            directory.rmdir()


async def _serve(listener: socket.socket, host_path: Path, tg: anyio.abc.TaskGroup) -> None:
    while True:
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            await anyio.wait_readable(listener)
            continue
        conn.setblocking(False)
        tg.start_soon(_relay, conn, host_path)


async def _relay(conn: socket.socket, host_path: Path) -> None:
    with conn:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with upstream:
            upstream.setblocking(False)
            try:
                upstream.connect(str(host_path))
            except BlockingIOError:
                await anyio.wait_writable(upstream)
            except OSError:
                return  # the host socket's server is gone: the client sees the close
            await relay_stream(conn, upstream)
