"""Files over HTTP(S): streamed into the blob store, named by the sha256 of their content.

A download is verified against the expected checksum while it streams; a mismatch keeps
nothing. Redirects are followed (a bounded number), sizes are bounded, and an Authorization
header given by the pipeline is sent to the URL's own host only, never after a redirect to
another one. Proxies from the environment apply except to loopback hosts and to `hosts`: names
the caller maps to addresses (a service's hostname to its bridge address), connected to
directly with the original name in the Host header (and as the TLS server name).
"""

from __future__ import annotations

import posixpath
import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING

import anyio.to_thread
import attrs

from dirk.errors import (
    ChecksumMismatchError,
    DigestMismatchError,
    HttpFetchError,
    InvalidArgumentError,
)
from dirk.state.blobs import BlobStore
from dirk.workers.images.registry import USER_AGENT, is_loopback

if TYPE_CHECKING:
    import httpx

#: The largest file `http()` downloads (a guard against a wrong URL filling the disk).
DEFAULT_MAX_BYTES = 8 * 1024**3
MAX_REDIRECTS = 10
#: Seconds each phase of a request may take (made an httpx.Timeout with the client: httpx
#: is imported on first use, not at the engine's start).
_TIMEOUT = dict(connect=15.0, read=120.0, write=60.0, pool=None)
_CHUNK = 1 << 20


@attrs.frozen
class Download:
    """A completed download: the blob's digest and size, and the URL it finally came from."""

    digest: str
    size: int
    final_url: str


def check_url(url: str) -> urllib.parse.SplitResult:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgumentError(
            f"{url!r} is not an http:// or https:// URL with a host: http() downloads from "
            "web servers only"
        )
    return parts


def default_name(url: str) -> str:
    """Dagger's default file name: the last part of the URL's path ("index" when empty)."""
    path = urllib.parse.unquote(urllib.parse.urlsplit(url).path)
    name = posixpath.basename(path.rstrip("/"))
    return name if name not in ("", ".", "..") else "index"


def shown_url(url: str) -> str:
    """The URL without credentials or query (which often carries tokens)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


class HttpSources:
    """The HTTP worker; one client per engine, made on first use."""

    def __init__(
        self,
        blobs: BlobStore,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._blobs = blobs
        self._max_bytes = max_bytes
        self._transport = transport
        self._clients: dict[bool, httpx.AsyncClient] = {}

    def _client(self, local: bool) -> httpx.AsyncClient:
        import httpx

        client = self._clients.get(local)
        if client is None:
            client = httpx.AsyncClient(
                timeout=httpx.Timeout(**_TIMEOUT),
                follow_redirects=False,
                trust_env=not local,
                headers={"User-Agent": USER_AGENT},
                transport=self._transport,
            )
            self._clients[local] = client
        return client

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()

    def has(self, digest: str) -> bool:
        return self._blobs.has(digest)

    async def download(
        self,
        url: str,
        *,
        auth_header: str = "",
        checksum: str | None = None,
        hosts: Mapping[str, str] | None = None,
    ) -> Download:
        """Stream `url` into the blob store; with `checksum` ("sha256:<hex>"), anything else
        is refused and nothing is stored. A host name in `hosts` is reached at its address
        there instead of being resolved (also after a redirect)."""
        import httpx

        origin = check_url(url)
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            parts = urllib.parse.urlsplit(current)
            headers = {}
            same_host = (parts.scheme, parts.netloc) == (origin.scheme, origin.netloc)
            if auth_header and same_host:
                headers["Authorization"] = auth_header
            target, extensions = current, {}
            address = (hosts or {}).get((parts.hostname or "").lower())
            if address is not None:
                target = _at_address(parts, address)
                headers["Host"] = parts.netloc.rpartition("@")[2]
                extensions["sni_hostname"] = parts.hostname or ""
            client = self._client(address is not None or is_loopback(parts.netloc))
            try:
                async with client.stream(
                    "GET", target, headers=headers, extensions=extensions
                ) as response:
                    if response.is_redirect:
                        location = response.headers.get("location", "")
                        current = urllib.parse.urljoin(current, location)
                        check_url(current)
                        continue
                    self._check_status(response, url)
                    return await self._store(response, url, checksum, current)
            except httpx.HTTPError as error:
                reason = f"{type(error).__name__}: {error or 'no answer'}"
                raise HttpFetchError(
                    f"cannot download {shown_url(url)}: {reason}; check the URL and that the "
                    "server is reachable from the engine"
                ) from None
        raise HttpFetchError(f"{shown_url(url)} redirects more than {MAX_REDIRECTS} times")

    def _check_status(self, response: httpx.Response, url: str) -> None:
        status = response.status_code
        if status == 200:
            return
        if status in (401, 403):
            hint = "the server refused access: check authHeader"
        elif status == 404:
            hint = "the server has no such file: check the URL"
        else:
            hint = f"the server answered {response.reason_phrase or 'an error'}"
        raise HttpFetchError(f"cannot download {shown_url(url)}: HTTP {status}: {hint}")

    async def _store(
        self, response: httpx.Response, url: str, checksum: str | None, final_url: str
    ) -> Download:
        length = response.headers.get("content-length")
        if length and length.isdigit() and int(length) > self._max_bytes:
            raise HttpFetchError(self._too_large(url))
        with self._blobs.writer(checksum) as writer:
            async for chunk in response.aiter_bytes(_CHUNK):
                if writer.size + len(chunk) > self._max_bytes:
                    raise HttpFetchError(self._too_large(url))
                writer.write(chunk)
            try:
                digest = await anyio.to_thread.run_sync(writer.commit)
            except DigestMismatchError:
                raise ChecksumMismatchError(
                    f"{shown_url(url)} does not match the expected checksum {checksum} "
                    f"({writer.size} bytes downloaded, nothing kept): the file changed on the "
                    "server or the checksum is wrong"
                ) from None
            return Download(digest, writer.size, final_url)

    def _too_large(self, url: str) -> str:
        return (
            f"{shown_url(url)} is larger than the engine's limit of {self._max_bytes} bytes "
            "for http(): download it inside a container instead"
        )


def _at_address(parts: urllib.parse.SplitResult, address: str) -> str:
    """The URL of `parts` with its host replaced by `address` (credentials and port kept)."""
    userinfo, at, _ = parts.netloc.rpartition("@")
    host = f"[{address}]" if ":" in address else address
    port = f":{parts.port}" if parts.port else ""
    netloc = f"{userinfo}{at}{host}{port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def check_checksum(checksum: str) -> str:
    """A checksum argument, checked: `sha256:` and 64 lowercase hex digits."""
    algo, sep, hexpart = checksum.partition(":")
    if (
        sep
        and algo == "sha256"
        and len(hexpart) == 64
        and all(c in "0123456789abcdef" for c in hexpart.lower())
    ):
        return f"sha256:{hexpart.lower()}"
    raise InvalidArgumentError(
        f"checksum {checksum!r} is not a sha256 digest: write it as sha256:<64 hex digits>"
    )
