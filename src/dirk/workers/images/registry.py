"""A client for the distribution (registry v2) API: manifests and blobs, with auth challenges.

Authentication follows the registry's 401 challenge: `Bearer` (fetch a token from the realm,
sending basic credentials when we have some) or `Basic` (send credentials directly). The header
that worked is kept per registry and repository, and renewed on the next 401.
Plain HTTP is used only for loopback registries, those named as insecure, and registries the
caller reaches at an address of its own (`using_registry_endpoints`: a registry run as a
service, `registryService`), which are connected to directly, never through a proxy.
Requests are retried on transient failures (see `retry`); a blob whose connection breaks is
resumed where it stopped, so its reader sees one unbroken stream.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, TypeVar

import anyio

from dirk.errors import (
    ImageError,
    ImageNotFoundError,
    RegistryAuthError,
    RegistryUnreachableError,
)
from dirk.workers.images.auth import (
    Challenge,
    Credentials,
    DockerConfig,
    active_docker_config,
    parse_challenge,
)
from dirk.workers.images.manifest import MANIFEST_ACCEPT, MAX_MANIFEST_BYTES
from dirk.workers.images.reference import ImageReference
from dirk.workers.images.retry import (
    DEFAULT_RETRY,
    RETRY_STATUSES,
    Backoff,
    RetryPolicy,
    TransientError,
    parse_retry_after,
)

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)
T = TypeVar("T")

USER_AGENT = "dirk/0.1"
#: Seconds each phase of a request may take (made an httpx.Timeout with the client: httpx
#: is imported on first use, not at the engine's start).
_TIMEOUT = dict(connect=10.0, read=60.0, write=60.0, pool=None)


def is_loopback(registry: str) -> bool:
    """Whether `host[:port]` names this machine (localhost, 127.0.0.0/8, ::1)."""
    host = registry
    if host.startswith("["):
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


#: Registry name (`host[:port]` as references write it) -> the `address:port` it is reached
#: at, for the calls made in this context (`using_registry_endpoints`).
_ENDPOINTS: ContextVar[Mapping[str, str]] = ContextVar(
    "registry_endpoints", default=MappingProxyType({})
)


@contextmanager
def using_registry_endpoints(endpoints: Mapping[str, str]) -> Iterator[None]:
    """Within the block (and tasks started in it), requests for a registry named in
    `endpoints` go to its `address:port` over plain HTTP (a registry run as a service)."""
    token = _ENDPOINTS.set({**_ENDPOINTS.get(), **endpoints})
    try:
        yield
    finally:
        _ENDPOINTS.reset(token)


def basic_header(creds: Credentials) -> str:
    token = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
    return f"Basic {token}"


class RegistryClient:
    def __init__(
        self,
        docker_config: Path,
        *,
        insecure_registries: Iterable[str] = (),
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        self._config_path = docker_config
        self._config: DockerConfig | None = None
        self._insecure = frozenset(insecure_registries)
        #: Authorization headers by (registry, repository, whose credentials).
        self._auth: dict[tuple[str, str, str], str] = {}
        self._auth_locks: dict[tuple[str, str, str], anyio.Lock] = {}
        self.retry = retry
        self._transport = transport
        #: HTTP clients made on first use (each loads the CA bundle: ~30 ms an engine start
        #: need not pay), by whether they talk to loopback registries.
        self._clients: dict[bool, httpx.AsyncClient] = {}

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()

    def client_for(self, url: str) -> httpx.AsyncClient:
        import httpx

        parsed = httpx.URL(url)
        direct = f"{parsed.host}:{parsed.port}" in _ENDPOINTS.get().values()
        local = direct or is_loopback(parsed.host)
        client = self._clients.get(local)
        if client is None:
            # Proxy variables apply to remote registries only: loopback is never proxied.
            client = self._clients[local] = httpx.AsyncClient(
                transport=self._transport,
                trust_env=not local,
                timeout=httpx.Timeout(**_TIMEOUT),
                follow_redirects=True,
                headers={"User-Agent": USER_AGENT},
                limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
            )
        return client

    def base_url(self, registry: str) -> str:
        endpoint = _ENDPOINTS.get().get(registry)
        if endpoint is not None:
            return f"http://{endpoint}"
        scheme = "http" if is_loopback(registry) or registry in self._insecure else "https"
        return f"{scheme}://{registry}"

    @property
    def docker_config(self) -> DockerConfig:
        """The config whose credentials calls use now: the session owner's when the caller
        set one (`auth.using_docker_config`), else the engine's own."""
        active = active_docker_config()
        if active is not None:
            return active
        if self._config is None:
            self._config = DockerConfig.load(self._config_path)
        return self._config

    # --- API ------------------------------------------------------------------------------

    async def get_manifest(
        self, ref: ImageReference, target: str
    ) -> tuple[bytes, str | None, str | None]:
        """The manifest or index that `target` (tag or digest) names: body, content type and
        the digest the registry claims for it (Docker-Content-Digest), if it sent one."""
        headers = {"Accept": MANIFEST_ACCEPT}
        what = _what(target)
        try:
            body, got = await self._fetch(
                ref, f"manifests/{target}", headers, what, MAX_MANIFEST_BYTES
            )
        except ImageNotFoundError as exc:
            if target.startswith("sha256:") or "no repository" in str(exc):
                raise
            raise await self._tag_not_found(ref, target) from None
        return body, got.get("content-type"), got.get("docker-content-digest")

    async def _tag_not_found(self, ref: ImageReference, tag: str) -> ImageNotFoundError:
        """Registries answer MANIFEST_UNKNOWN for a missing repository too: the tag list tells
        the two apart, and names the tags there are."""
        try:
            body, _ = await self._fetch(ref, "tags/list", {}, "the tag list", MAX_MANIFEST_BYTES)
            data = json.loads(body)
            tags = data.get("tags") if isinstance(data, dict) else None
        except ImageNotFoundError as exc:
            if "no repository" in str(exc):
                return exc
            tags = None
        except (ImageError, ValueError):
            tags = None
        listed = ""
        if isinstance(tags, list) and tags:
            shown = sorted(str(t) for t in tags)[:20]
            listed = f"; it has: {', '.join(shown)}" + (", ..." if len(tags) > 20 else "")
        return ImageNotFoundError(
            f"registry {ref.registry} has no tag {tag!r} in repository {ref.repository!r} "
            f"(asked for {ref}){listed}"
        )

    async def get_blob(self, ref: ImageReference, digest: str, limit: int) -> bytes:
        """A small blob (an image config), read whole."""
        what = f"blob {digest}"
        body, _ = await self._fetch(ref, f"blobs/{digest}", {}, what, limit)
        return body

    @asynccontextmanager
    async def open_blob(
        self, ref: ImageReference, digest: str, size: int
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        """The bytes of a blob of `size` bytes, first to last, as one stream: a connection that
        breaks midway is resumed (Range) or restarted, unseen by the reader. Verifying the digest
        stays the reader's job."""
        stream = BlobStream(self, ref, digest, size)
        try:
            await stream.open()
            yield stream
        finally:
            await stream.aclose()

    # --- plumbing -------------------------------------------------------------------------

    def url(self, ref: ImageReference, path: str) -> str:
        return f"{self.base_url(ref.registry)}/v2/{ref.repository}/{path}"

    async def retrying(self, attempt: Callable[[], Awaitable[T]], backoff: Backoff) -> T:
        """`attempt()`, made again after each TransientError until `backoff` gives up."""
        while True:
            try:
                return await attempt()
            except TransientError as failure:
                await backoff.failed(failure)

    async def _fetch(
        self, ref: ImageReference, path: str, headers: dict[str, str], what: str, limit: int
    ) -> tuple[bytes, httpx.Headers]:
        """A whole (small) document and its response headers, with retries."""

        async def attempt() -> tuple[bytes, httpx.Headers]:
            import httpx

            response = await self.open_once(ref, path, headers, what)
            try:
                body = await _read_limited(response, limit, f"{what} of {ref.name}")
            except httpx.TransportError as exc:
                raise _transient(ref, exc, what) from None
            finally:
                await response.aclose()
            return body, response.headers

        return await self.retrying(attempt, Backoff(self.retry))

    async def open_once(
        self, ref: ImageReference, path: str, headers: dict[str, str], what: str
    ) -> httpx.Response:
        """One GET, through the registry's auth challenge: a streaming response with a 2xx
        status, which the caller closes. Raises TransientError for what a retry may cure."""
        import httpx

        url = self.url(ref, path)
        key = (ref.registry, ref.repository, self.docker_config.identity(ref.registry))
        sent = self._auth.get(key)
        response = await self._send(ref, url, headers, sent, what)
        if response.status_code == 401:
            challenge = response.headers.get("www-authenticate", "")
            await response.aclose()
            async with self._auth_locks.setdefault(key, anyio.Lock()):
                auth = self._auth.get(key)
                # Requests refused at once (a pull's layers) log in once: the others take the
                # header it got, rather than a new token each or "refused" for the same one.
                if auth is None or auth == sent:
                    auth = await self._authenticate(ref, challenge, sent)
                    self._auth[key] = auth
            response = await self._send(ref, url, headers, auth, what)
            if response.status_code == 401:
                await response.aclose()
                raise self._refused(ref)
        if response.status_code < 400:
            return response
        try:
            await response.aread()
        except httpx.TransportError as exc:
            raise _transient(ref, exc, what) from None
        finally:
            await response.aclose()
        error = self._http_error(ref, response, what)
        if response.status_code in RETRY_STATUSES:
            raise TransientError(error, parse_retry_after(response.headers.get("retry-after")))
        raise error

    async def _send(
        self, ref: ImageReference, url: str, headers: dict[str, str], auth: str | None, what: str
    ) -> httpx.Response:
        import httpx

        if auth is not None:
            headers = {**headers, "Authorization": auth}
        client = self.client_for(url)
        request = client.build_request("GET", url, headers=headers)
        try:
            return await client.send(request, stream=True)
        except httpx.TransportError as exc:
            raise _transient(ref, exc, what) from None

    async def _authenticate(self, ref: ImageReference, header: str, stale: str | None) -> str:
        """The Authorization header value that answers the registry's challenge to a request
        that sent `stale`."""
        challenge = parse_challenge(header)
        creds = self.docker_config.credentials(ref.registry)
        if challenge is None or challenge.scheme not in ("bearer", "basic"):
            raise RegistryAuthError(
                f"registry {ref.registry} asks for authentication with an unsupported scheme "
                f"({header or 'no WWW-Authenticate header'}); dirk supports Bearer and Basic"
            )
        if challenge.scheme == "basic":
            if creds is None:
                raise RegistryAuthError(
                    f"registry {ref.registry} needs credentials to pull {ref.name}: "
                    + self.docker_config.missing_credentials_hint(ref.registry)
                )
            value = basic_header(creds)
            if value == stale:
                raise self._refused(ref)
            return value
        return "Bearer " + await self.fetch_token(ref, challenge, creds)

    async def fetch_token(
        self, ref: ImageReference, challenge: Challenge, creds: Credentials | None
    ) -> str:
        """A Bearer token from the challenge's realm, for its scope (pull when it names
        none), asked for with `creds` when there are some."""
        import httpx

        realm = challenge.get("realm")
        if not realm:
            raise RegistryAuthError(
                f"registry {ref.registry} sent a Bearer challenge without a realm; it is "
                "misconfigured"
            )
        params = {"scope": challenge.get("scope") or f"repository:{ref.repository}:pull"}
        if challenge.get("service"):
            params["service"] = challenge.get("service") or ""
        auth = httpx.BasicAuth(creds.username, creds.password) if creds else None
        host = httpx.URL(realm).host or realm

        async def attempt() -> httpx.Response:
            import httpx

            try:
                r = await self.client_for(realm).get(realm, params=params, auth=auth)
            except httpx.TransportError as exc:
                error = _unreachable(host, exc, f"(the token service of {ref.registry})")
                raise TransientError(error) from None
            if r.status_code in RETRY_STATUSES:
                raise TransientError(
                    RegistryAuthError(
                        f"the token service {realm} of {ref.registry} answered HTTP "
                        f"{r.status_code}: {r.text[:200]}"
                    ),
                    parse_retry_after(r.headers.get("retry-after")),
                )
            return r

        r = await self.retrying(attempt, Backoff(self.retry))
        if r.status_code in (401, 403):
            if creds is None:
                raise RegistryAuthError(
                    f"the token service of {ref.registry} refused anonymous access to "
                    f"{ref.name}: " + self.docker_config.missing_credentials_hint(ref.registry)
                )
            raise RegistryAuthError(
                f"the token service of {ref.registry} refused the credentials of user "
                f"{creds.username!r}; check them (docker login, or withRegistryAuth)"
            )
        if r.status_code >= 400:
            raise RegistryAuthError(
                f"the token service {realm} of {ref.registry} answered HTTP {r.status_code}: "
                f"{r.text[:200]}"
            )
        try:
            data = r.json()
            token = data.get("token") or data.get("access_token")
        except (json.JSONDecodeError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryAuthError(
                f"the token service {realm} of {ref.registry} answered without a token"
            )
        return token

    def _refused(self, ref: ImageReference) -> RegistryAuthError:
        creds = self.docker_config.credentials(ref.registry)
        if creds is None:
            return RegistryAuthError(
                f"registry {ref.registry} refused access to {ref.name}: the repository does not "
                "exist, or it is private and needs credentials: "
                + self.docker_config.missing_credentials_hint(ref.registry)
            )
        return RegistryAuthError(
            f"registry {ref.registry} refused the credentials of user {creds.username!r} "
            f"(from {self.docker_config.path}) for {ref.name}: check the password, and that "
            "the user may pull this repository"
        )

    def _http_error(self, ref: ImageReference, r: httpx.Response, what: str) -> ImageError:
        codes, message = _error_codes(r)
        if r.status_code == 404 or codes & {"NAME_UNKNOWN", "MANIFEST_UNKNOWN", "BLOB_UNKNOWN"}:
            if "NAME_UNKNOWN" in codes:
                return ImageNotFoundError(
                    f"registry {ref.registry} has no repository {ref.repository!r} (asked for "
                    f"{ref}); check the image name"
                )
            return ImageNotFoundError(
                f"registry {ref.registry} has no {what} in repository {ref.repository!r} "
                f"(asked for {ref}); check the tag or digest"
            )
        if r.status_code == 403 or "DENIED" in codes:
            return RegistryAuthError(
                f"registry {ref.registry} denied access to {what} of {ref.name}: {message}"
            )
        if r.status_code == 429 or "TOOMANYREQUESTS" in codes:
            return ImageError(
                f"registry {ref.registry} is rate-limiting us (HTTP 429) while fetching {what} of "
                f"{ref.name}; wait and retry, or log in to raise the limit"
            )
        return ImageError(
            f"registry {ref.registry} answered HTTP {r.status_code} for {what} of {ref.name}"
            + (f": {message}" if message else "")
        )


def _what(target: str) -> str:
    return f"manifest {target}" if target.startswith("sha256:") else f"tag {target!r}"


def _error_codes(r: httpx.Response) -> tuple[set[str], str]:
    try:
        errors = r.json().get("errors") or []
        codes = {str(e.get("code", "")) for e in errors}
        message = "; ".join(str(e.get("message", "")) for e in errors)
        return codes, message
    except (json.JSONDecodeError, AttributeError, UnicodeDecodeError, TypeError):
        return set(), r.text[:200].strip()


async def _read_limited(r: httpx.Response, limit: int, what: str) -> bytes:
    parts: list[bytes] = []
    size = 0
    async for chunk in r.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise ImageError(f"{what} is larger than {limit} bytes; refusing to read it")
        parts.append(chunk)
    return b"".join(parts)


def _unreachable(registry: str, exc: httpx.TransportError, context: str = "") -> ImageError:
    import httpx

    reason = str(exc) or type(exc).__name__
    where = f"registry {registry}" + (f" {context}" if context else "")
    if isinstance(exc, httpx.TimeoutException):
        return RegistryUnreachableError(
            f"{where} did not answer in time ({type(exc).__name__}); check that it is running "
            "and reachable from this machine"
        )
    if "CERTIFICATE" in reason.upper() or "SSL" in reason.upper():
        return RegistryUnreachableError(
            f"cannot talk TLS to {where} ({reason}); if it serves plain HTTP, list it in "
            "insecure_registries"
        )
    if isinstance(exc, httpx.ConnectError):
        return RegistryUnreachableError(
            f"cannot connect to {where} ({reason}); check that the registry is running and that "
            f"the name {registry!r} is right"
        )
    return RegistryUnreachableError(
        f"the connection to {where} failed ({reason}); check the network between this machine "
        "and the registry"
    )


def _transient(ref: ImageReference, exc: httpx.TransportError, what: str) -> TransientError:
    return TransientError(_unreachable(ref.registry, exc, f"while fetching {what} of {ref.name}"))


_CONTENT_RANGE = re.compile(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)


def content_range_start(value: str | None) -> int | None:
    """The first byte a 206 answer holds, from `Content-Range: bytes FIRST-LAST/TOTAL`."""
    m = _CONTENT_RANGE.match(value or "")
    return int(m.group(1)) if m else None


class BlobStream:
    """A blob's bytes across broken connections: after a break, the download goes on from the
    byte reached, with a Range request when the registry honours it (206), else from a full
    answer whose first bytes, already handed out, are skipped. The reader (hashing, piping
    into the decompressor) never sees a break, so nothing it wrote needs undoing; the digest
    check at its end covers every byte, whichever connection brought it."""

    def __init__(self, client: RegistryClient, ref: ImageReference, digest: str, size: int):
        self._client = client
        self._ref = ref
        self._digest = digest
        self._size = size
        self._what = f"blob {digest}"
        self._backoff = Backoff(client.retry)
        self._response: httpx.Response | None = None
        self._chunks: AsyncIterator[bytes] | None = None
        self._skip = 0
        self._ranged = True  # False once the registry has botched a Range request
        self.received = 0

    async def open(self) -> None:
        await self._client.retrying(self._connect, self._backoff)

    async def aclose(self) -> None:
        if self._response is not None:
            await self._response.aclose()
            self._response = None

    def __aiter__(self) -> BlobStream:
        return self

    async def __anext__(self) -> bytes:
        import httpx

        while True:
            assert self._chunks is not None
            try:
                chunk = await self._chunks.__anext__()
            # A clean end is the end, short or not: the digest check judges what came. Only a
            # broken connection (httpx raises when fewer bytes than announced arrive) resumes.
            except httpx.TransportError as exc:
                if self.received >= self._size:
                    raise StopAsyncIteration from None  # all there; the digest check decides
                failure = _transient(self._ref, exc, self._what)
            else:
                if self._skip:
                    dropped = min(self._skip, len(chunk))
                    self._skip -= dropped
                    chunk = chunk[dropped:]
                if not chunk:
                    continue
                self.received += len(chunk)
                self._backoff.progressed()
                return chunk
            await self.aclose()
            await self._backoff.failed(failure)
            await self.open()

    async def _connect(self) -> None:
        """One attempt at a connection delivering the blob from byte `received` on."""
        await self.aclose()
        headers = {"Accept-Encoding": "identity"}  # byte offsets must be those of the blob
        if self.received and self._ranged:
            headers["Range"] = f"bytes={self.received}-"
        response = await self._client.open_once(
            self._ref, f"blobs/{self._digest}", headers, self._what
        )
        if response.status_code == 206:
            start = content_range_start(response.headers.get("content-range"))
            if start != self.received:
                await response.aclose()
                self._ranged = False
                raise TransientError(
                    ImageError(
                        f"registry {self._ref.registry} answered a request for {self._what} "
                        f"from byte {self.received} with bytes from {start}"
                    )
                )
            self._skip = 0
        else:
            self._skip = self.received
        if self.received:
            how = "resumed at byte" if self._skip == 0 else "restarted (no Range); skipping"
            log.info(
                "%s of %s: %s %d of %d",
                self._what,
                self._ref.name,
                how,
                self.received,
                self._size,
            )
        self._response = response
        self._chunks = response.aiter_bytes()
