"""Health probes of services: whether a TCP port of a container accepts a connection.

The engine is on the host side of the bridge, so it reaches every container's address
directly; a probe connects and closes at once (the server sees a connection with no data,
which every TCP server tolerates).
"""

from __future__ import annotations

import anyio

#: How long one connection attempt may take before it counts as a failure.
CONNECT_TIMEOUT = 1.0


async def tcp_accepts(address: str, port: int, timeout: float = CONNECT_TIMEOUT) -> bool:
    """Whether `address:port` accepts a TCP connection now."""
    try:
        with anyio.fail_after(timeout):
            stream = await anyio.connect_tcp(address, port)
    except (OSError, TimeoutError):
        return False
    await stream.aclose()
    return True
