"""A client for the distribution (registry v2) API: manifests and blobs, with auth challenges.

Authentication follows the registry's 401 challenge: `Bearer` (fetch a token from the realm,
sending basic credentials when we have some) or `Basic` (send credentials directly). The header
that worked is kept per registry and repository, and renewed on the next 401.
Plain HTTP is used only for loopback registries and those named as insecure.
"""

from __future__ import annotations

import base64
import ipaddress
import json
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx

from dirk.errors import (
    ImageError,
    ImageNotFoundError,
    RegistryAuthError,
    RegistryUnreachableError,
)
from dirk.workers.images.auth import Challenge, Credentials, DockerConfig, parse_challenge
from dirk.workers.images.manifest import MANIFEST_ACCEPT, MAX_MANIFEST_BYTES
from dirk.workers.images.reference import ImageReference

USER_AGENT = "dirk/0.1"
_TIMEOUT = httpx.Timeout(connect=10.0, read=60.0, write=60.0, pool=None)


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
    ) -> None:
        self._config_path = docker_config
        self._config: DockerConfig | None = None
        self._insecure = frozenset(insecure_registries)
        self._auth: dict[tuple[str, str], str] = {}
        self._auth_locks: dict[tuple[str, str], anyio.Lock] = {}
        # Proxy variables apply to remote registries only: this machine is never behind a proxy.
        self._remote, self._local = (
            httpx.AsyncClient(
                transport=transport,
                trust_env=trust_env,
                timeout=_TIMEOUT,
                follow_redirects=True,
                headers={"User-Agent": USER_AGENT},
                limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
            )
            for trust_env in (True, False)
        )

    async def aclose(self) -> None:
        await self._remote.aclose()
        await self._local.aclose()

    def _client_for(self, url: str) -> httpx.AsyncClient:
        host = httpx.URL(url).host
        return self._local if is_loopback(host) else self._remote

    def base_url(self, registry: str) -> str:
        scheme = "http" if is_loopback(registry) or registry in self._insecure else "https"
        return f"{scheme}://{registry}"

    @property
    def docker_config(self) -> DockerConfig:
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
        try:
            async with self._open(ref, f"manifests/{target}", headers, what=_what(target)) as r:
                body = await _read_limited(r, MAX_MANIFEST_BYTES, f"the manifest of {ref}")
                return body, r.headers.get("content-type"), r.headers.get("docker-content-digest")
        except ImageNotFoundError as exc:
            if target.startswith("sha256:") or "no repository" in str(exc):
                raise
            raise await self._tag_not_found(ref, target) from None

    async def _tag_not_found(self, ref: ImageReference, tag: str) -> ImageNotFoundError:
        """Registries answer MANIFEST_UNKNOWN for a missing repository too: the tag list tells
        the two apart, and names the tags there are."""
        try:
            async with self._open(ref, "tags/list", {}, what="the tag list") as r:
                await r.aread()
                data = r.json()
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
        async with self.open_blob(ref, digest) as r:
            return await _read_limited(r, limit, f"blob {digest} of {ref.name}")

    @asynccontextmanager
    async def open_blob(self, ref: ImageReference, digest: str) -> AsyncIterator[httpx.Response]:
        """A streaming response for a blob; read it with `aiter_bytes`."""
        async with self._open(ref, f"blobs/{digest}", {}, what=f"blob {digest}") as r:
            yield r

    # --- plumbing -------------------------------------------------------------------------

    @asynccontextmanager
    async def _open(
        self, ref: ImageReference, path: str, headers: dict[str, str], *, what: str
    ) -> AsyncIterator[httpx.Response]:
        url = f"{self.base_url(ref.registry)}/v2/{ref.repository}/{path}"
        key = (ref.registry, ref.repository)
        sent = self._auth.get(key)
        response = await self._send(ref, url, headers, sent)
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
            response = await self._send(ref, url, headers, auth)
            if response.status_code == 401:
                await response.aclose()
                raise self._refused(ref)
        try:
            if response.status_code >= 400:
                await response.aread()
                raise self._http_error(ref, response, what)
            yield response
        except httpx.TransportError as exc:
            raise _unreachable(ref.registry, exc, f"while downloading {what}") from None
        finally:
            await response.aclose()

    async def _send(
        self, ref: ImageReference, url: str, headers: dict[str, str], auth: str | None
    ) -> httpx.Response:
        if auth is not None:
            headers = {**headers, "Authorization": auth}
        client = self._client_for(url)
        request = client.build_request("GET", url, headers=headers)
        try:
            return await client.send(request, stream=True)
        except httpx.TransportError as exc:
            raise _unreachable(ref.registry, exc) from None

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
        return "Bearer " + await self._fetch_token(ref, challenge)

    async def _fetch_token(self, ref: ImageReference, challenge: Challenge) -> str:
        realm = challenge.get("realm")
        if not realm:
            raise RegistryAuthError(
                f"registry {ref.registry} sent a Bearer challenge without a realm; it is "
                "misconfigured"
            )
        params = {"scope": challenge.get("scope") or f"repository:{ref.repository}:pull"}
        if challenge.get("service"):
            params["service"] = challenge.get("service") or ""
        creds = self.docker_config.credentials(ref.registry)
        auth = httpx.BasicAuth(creds.username, creds.password) if creds else None
        try:
            r = await self._client_for(realm).get(realm, params=params, auth=auth)
        except httpx.TransportError as exc:
            host = httpx.URL(realm).host or realm
            raise _unreachable(host, exc, f"(the token service of {ref.registry})") from None
        if r.status_code in (401, 403):
            if creds is None:
                raise RegistryAuthError(
                    f"the token service of {ref.registry} refused anonymous access to "
                    f"{ref.name}: " + self.docker_config.missing_credentials_hint(ref.registry)
                )
            raise RegistryAuthError(
                f"the token service of {ref.registry} refused the credentials of user "
                f"{creds.username!r} from {self.docker_config.path}; check them (docker login)"
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
                f"registry {ref.registry} is rate-limiting us (HTTP 429) while fetching {what}; "
                "wait and retry, or log in to raise the limit"
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
    return RegistryUnreachableError(f"the connection to {where} failed ({reason}); retry")
