"""The host's container image store, when it is a Docker daemon: images loaded into it
(`Container.exportImage`) and saved out of it (`Host.containerImage`) through the Docker
Engine API on its unix socket (`POST /images/load`, `GET /images/{name}/json`,
`GET /images/{name}/get`).

The socket is the one the session's client would use: `DOCKER_HOST=unix://...` from its
environment, else `/var/run/docker.sock`. A TCP `DOCKER_HOST` is refused with what to set
instead (the engine speaks to the daemon as the session's owner would, through the socket's
permissions; over TCP it could not tell).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from dirk.errors import ImageError

if TYPE_CHECKING:
    import httpx

DEFAULT_SOCKET = Path("/var/run/docker.sock")
#: Seconds a load or save may take before it is given up (images can be large).
#: Seconds each phase of a request may take (made an httpx.Timeout with the client: httpx
#: is imported on first use, not at the engine's start).
TIMEOUT = dict(connect=10.0, read=600.0, write=600.0, pool=10.0)
_CHUNK = 1024 * 1024


def docker_socket(env: Mapping[str, str]) -> Path:
    """The Docker daemon's unix socket as the client's environment names it."""
    host = env.get("DOCKER_HOST", "").strip()
    if not host:
        return DEFAULT_SOCKET
    if host.startswith("unix://"):
        return Path(host.removeprefix("unix://"))
    raise ImageError(
        f"DOCKER_HOST={host} is not a unix socket: dirk reaches the host's image store through "
        "the Docker daemon's unix socket; set DOCKER_HOST=unix:///path/to/docker.sock (or unset "
        "it for /var/run/docker.sock)"
    )


def _client(socket: Path) -> httpx.AsyncClient:
    import httpx

    if not socket.is_socket():
        raise ImageError(
            f"no Docker daemon socket at {socket}: start Docker (or set DOCKER_HOST="
            "unix:///path/to/docker.sock) to use the host's image store"
        )
    transport = httpx.AsyncHTTPTransport(uds=str(socket))
    return httpx.AsyncClient(
        transport=transport, base_url="http://docker", timeout=httpx.Timeout(**TIMEOUT)
    )


async def load(socket: Path, tarball: Path) -> None:
    """`docker load` of the image tarball at `tarball` (it names its tags itself)."""
    import httpx

    async def body() -> AsyncIterator[bytes]:
        with tarball.open("rb") as f:
            while chunk := f.read(_CHUNK):
                yield chunk

    async with _client(socket) as http:
        try:
            response = await http.post(
                "/images/load",
                params={"quiet": "1"},
                content=body(),
                headers={"Content-Type": "application/x-tar"},
            )
        except httpx.HTTPError as exc:
            raise ImageError(
                f"the Docker daemon at {socket} did not take the image: {exc}"
            ) from exc
    if response.status_code != 200:
        raise ImageError(_refusal(socket, "load the image", response))
    for line in response.text.splitlines():  # a JSON message stream; errors arrive in it
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if isinstance(message, dict) and message.get("error"):
            raise ImageError(f"the Docker daemon at {socket} refused the image: {message['error']}")


async def image_id(socket: Path, name: str) -> str:
    """The ID (config digest) of the image `name` in the store."""
    import httpx

    async with _client(socket) as http:
        try:
            response = await http.get(f"/images/{quote(name, safe='')}/json")
        except httpx.HTTPError as exc:
            raise ImageError(f"cannot ask the Docker daemon at {socket}: {exc}") from exc
    if response.status_code == 404:
        raise ImageError(
            f"no image {name!r} in the Docker image store at {socket}: `docker images` lists "
            "what it has (pull or build it there first)"
        )
    if response.status_code != 200:
        raise ImageError(_refusal(socket, f"inspect {name!r}", response))
    found = response.json().get("Id")
    if not isinstance(found, str) or not found.startswith("sha256:"):
        raise ImageError(f"the Docker daemon at {socket} gave {name!r} no image ID")
    return found


async def save(socket: Path, name: str, out: Path) -> None:
    """`docker save` of the image `name` into the file `out`."""
    import httpx

    async with _client(socket) as http:
        try:
            async with http.stream("GET", f"/images/{quote(name, safe='')}/get") as response:
                if response.status_code != 200:
                    await response.aread()
                    raise ImageError(_refusal(socket, f"save {name!r}", response))
                with out.open("wb") as f:
                    async for chunk in response.aiter_bytes(_CHUNK):
                        f.write(chunk)
        except httpx.HTTPError as exc:
            raise ImageError(
                f"cannot save {name!r} from the Docker daemon at {socket}: {exc}"
            ) from exc


def _refusal(socket: Path, what: str, response: httpx.Response) -> str:
    try:
        detail = response.json().get("message") or response.text
    except ValueError:
        detail = response.text
    return f"the Docker daemon at {socket} could not {what}: HTTP {response.status_code}: {detail}"
