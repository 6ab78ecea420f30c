"""Push a built image to a registry (distribution v2): blobs the registry lacks, then manifests.

Each blob is first looked for (HEAD); one known to be in another repository of the same
registry is mounted from there (POST ?mount=&from=), with no bytes sent; the rest is uploaded:
in one PUT when small, else in PATCH chunks closed by a PUT with the digest. Manifests go last,
platform manifests by digest before the index that names them, the tag on the root. Auth
answers the registry's 401 challenge (Basic, or a Bearer token for the scope it names) with
the credentials given, else those of Docker's config.json; it is kept for this push only, so
credentials given to one pipeline never serve another.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
import attrs

from dirk.errors import ImageError, InvalidArgumentError, RegistryAuthError
from dirk.state.blobs import BlobStore
from dirk.state.db import Database
from dirk.workers.images.auth import Challenge, Credentials, parse_challenge
from dirk.workers.images.image_out import BuiltImage, Descriptor
from dirk.workers.images.reference import DEFAULT_TAG, ImageReference
from dirk.workers.images.registry import RegistryClient, basic_header
from dirk.workers.images.retry import RETRY_STATUSES, Backoff, TransientError

if TYPE_CHECKING:
    import httpx

#: Blobs up to this size go up in one PUT; larger ones in chunks of `CHUNK_SIZE`.
MONOLITHIC_LIMIT = 16 * 1024 * 1024
CHUNK_SIZE = 32 * 1024 * 1024
_READ = 1024 * 1024
MAX_CONCURRENT_UPLOADS = 4

Body = Callable[[], AsyncIterator[bytes]] | bytes | None


@attrs.define
class PushStats:
    """What a push did with each blob: found there, mounted from another repository, sent."""

    existing: int = 0
    mounted: int = 0
    uploaded: int = 0
    uploaded_bytes: int = 0


@attrs.frozen
class PushResult:
    address: str  # what was pushed to, with `@digest`
    digest: str
    stats: PushStats


def push_target(address: str) -> ImageReference:
    """The reference to push to: a tag (latest when absent), never a digest."""
    ref = ImageReference.parse(address)
    if ref.digest is not None:
        raise InvalidArgumentError(
            f"cannot publish to {address!r}: it names a digest; publish to a tag (the digest "
            "is what publish returns)"
        )
    return ref


async def push_image(
    client: RegistryClient,
    blobs: BlobStore,
    db: Database,
    address: str,
    image: BuiltImage,
    credentials: Credentials | None = None,
) -> PushResult:
    """Push `image` (all its blobs in `blobs`) to `address`; returns `address@digest`."""
    ref = push_target(address)
    pusher = _Pusher(client, blobs, db, ref, credentials)
    await pusher.push(image)
    tag = ref.tag or DEFAULT_TAG
    shown = address if ref.tag is not None and address.endswith(f":{tag}") else f"{address}:{tag}"
    return PushResult(f"{shown}@{image.root.digest}", image.root.digest, pusher.stats)


class _Pusher:
    def __init__(
        self,
        client: RegistryClient,
        blobs: BlobStore,
        db: Database,
        ref: ImageReference,
        credentials: Credentials | None,
    ) -> None:
        self._client = client
        self._blobs = blobs
        self._db = db
        self._ref = ref
        self._creds = credentials
        self._auth: str | None = None
        self._auth_lock = anyio.Lock()
        self.stats = PushStats()

    @property
    def creds(self) -> Credentials | None:
        if self._creds is not None:
            return self._creds
        return self._client.docker_config.credentials(self._ref.registry)

    async def push(self, image: BuiltImage) -> None:
        slots = anyio.Semaphore(MAX_CONCURRENT_UPLOADS)
        blobs = image.blobs()
        # The first request logs in, so the uploads after it do not each meet a 401.
        if blobs:
            await self._blob(blobs[0])

        async def one(desc: Descriptor) -> None:
            async with slots:
                await self._blob(desc)

        async with anyio.create_task_group() as tg:
            for desc in blobs[1:]:
                tg.start_soon(one, desc)
        tag = self._ref.tag or DEFAULT_TAG
        if image.index is not None:
            for m in image.manifests:
                await self._manifest(m.manifest, m.manifest.digest)
            await self._manifest(image.index, tag)
        else:
            await self._manifest(image.root, tag)

    # --- blobs ----------------------------------------------------------------------------

    async def _blob(self, desc: Descriptor) -> None:
        backoff = Backoff(self._client.retry)
        await self._client.retrying(lambda: self._blob_once(desc), backoff)
        self._db.add_blob_source(desc.digest, self._ref.registry, self._ref.repository)

    async def _blob_once(self, desc: Descriptor) -> None:
        what = f"blob {desc.digest}"
        r = await self._request("HEAD", self._url(f"blobs/{desc.digest}"), what=what)
        if r.status_code == 200:
            self.stats.existing += 1
            return
        location = None
        for source in self._db.blob_sources(desc.digest, self._ref.registry):
            if source == self._ref.repository:
                continue
            r = await self._request(
                "POST",
                self._url("blobs/uploads/"),
                params={"mount": desc.digest, "from": source},
                what=f"a mount of {what} from {source}",
                ok=(201, 202),
            )
            if r.status_code == 201:
                self.stats.mounted += 1
                return
            location = self._location(r)
            break
        if location is None:
            r = await self._request(
                "POST", self._url("blobs/uploads/"), what=f"an upload of {what}", ok=(202,)
            )
            location = self._location(r)
        path = self._blobs.path(desc.digest)
        if desc.size <= MONOLITHIC_LIMIT:
            data = await anyio.to_thread.run_sync(path.read_bytes)
            await self._request(
                "PUT",
                location.copy_merge_params({"digest": desc.digest}),
                body=data,
                headers={"Content-Type": "application/octet-stream"},
                what=what,
                ok=(201, 204),
            )
        else:
            offset = 0
            while offset < desc.size:
                length = min(CHUNK_SIZE, desc.size - offset)
                r = await self._request(
                    "PATCH",
                    location,
                    body=_file_part(path, offset, length),
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"{offset}-{offset + length - 1}",
                        "Content-Length": str(length),
                    },
                    what=what,
                    ok=(202,),
                )
                location = self._location(r)
                offset += length
            await self._request(
                "PUT",
                location.copy_merge_params({"digest": desc.digest}),
                headers={"Content-Length": "0"},
                what=what,
                ok=(201, 204),
            )
        self.stats.uploaded += 1
        self.stats.uploaded_bytes += desc.size

    def _location(self, r: httpx.Response) -> httpx.URL:
        location = r.headers.get("location")
        if not location:
            raise ImageError(
                f"registry {self._ref.registry} started an upload without a Location header"
            )
        return r.url.join(location)

    async def _manifest(self, desc: Descriptor, target: str) -> None:
        data = await anyio.to_thread.run_sync(self._blobs.get_bytes, desc.digest)

        async def attempt() -> None:
            await self._request(
                "PUT",
                self._url(f"manifests/{target}"),
                body=data,
                headers={"Content-Type": desc.media_type},
                what=f"manifest {desc.digest}",
                ok=(201, 202, 204),
            )

        await self._client.retrying(attempt, Backoff(self._client.retry))

    # --- requests -------------------------------------------------------------------------

    def _url(self, path: str) -> httpx.URL:
        import httpx

        return httpx.URL(self._client.url(self._ref, path))

    async def _request(
        self,
        method: str,
        url: httpx.URL,
        *,
        what: str,
        params: dict[str, str] | None = None,
        body: Body = None,
        headers: dict[str, str] | None = None,
        ok: tuple[int, ...] = (200, 404),
    ) -> httpx.Response:
        """One request through the auth challenge; its body read. Raises TransientError for
        what a retry may cure, and a clear error for any other status not in `ok`."""
        if params:
            url = url.copy_merge_params(params)
        sent = self._auth
        r = await self._send(method, url, body, headers, sent, what)
        if r.status_code == 401:
            challenge = r.headers.get("www-authenticate", "")
            async with self._auth_lock:
                if self._auth is None or self._auth == sent:
                    self._auth = await self._authenticate(challenge, sent)
            r = await self._send(method, url, body, headers, self._auth, what)
            if r.status_code == 401:
                raise self._refused()
        if r.status_code in ok:
            return r
        if r.status_code in RETRY_STATUSES:
            raise TransientError(self._error(r, method, what))
        raise self._error(r, method, what)

    async def _send(
        self,
        method: str,
        url: httpx.URL,
        body: Body,
        headers: dict[str, str] | None,
        auth: str | None,
        what: str,
    ) -> httpx.Response:
        import httpx

        all_headers = dict(headers or {})
        if auth is not None:
            all_headers["Authorization"] = auth
        content = body() if callable(body) else body
        client = self._client.client_for(str(url))
        try:
            return await client.request(method, url, headers=all_headers, content=content)
        except httpx.TransportError as exc:
            raise TransientError(
                ImageError(
                    f"pushing {what} to {self._ref.registry} failed ({exc or type(exc).__name__})"
                    "; check that the registry is running and reachable"
                )
            ) from None

    async def _authenticate(self, header: str, stale: str | None) -> str:
        challenge = parse_challenge(header)
        creds = self.creds
        if challenge is None or challenge.scheme not in ("bearer", "basic"):
            raise RegistryAuthError(
                f"registry {self._ref.registry} asks for authentication with an unsupported "
                f"scheme ({header or 'no WWW-Authenticate header'}); dirk supports Bearer and Basic"
            )
        if challenge.scheme == "basic":
            if creds is None:
                raise RegistryAuthError(
                    f"registry {self._ref.registry} needs credentials to push {self._ref.name}: "
                    "give them with withRegistryAuth(address, username, secret), or "
                    + self._client.docker_config.missing_credentials_hint(self._ref.registry)
                )
            value = basic_header(creds)
            if value == stale:
                raise self._refused()
            return value
        if not challenge.get("scope"):
            scope = f"repository:{self._ref.repository}:pull,push"
            challenge = Challenge(challenge.scheme, (*challenge.params, ("scope", scope)))
        return "Bearer " + await self._client.fetch_token(self._ref, challenge, creds)

    def _refused(self) -> RegistryAuthError:
        creds = self.creds
        if creds is None:
            return RegistryAuthError(
                f"registry {self._ref.registry} refused to let us push to {self._ref.name} "
                "without credentials: give them with withRegistryAuth(address, username, "
                "secret), or "
                + self._client.docker_config.missing_credentials_hint(self._ref.registry)
            )
        return RegistryAuthError(
            f"registry {self._ref.registry} refused the credentials of user "
            f"{creds.username!r} for a push to {self._ref.name}: check the password, and that "
            "the user may push to this repository"
        )

    def _error(self, r: httpx.Response, method: str, what: str) -> ImageError:
        message = ""
        try:
            errors = json.loads(r.content).get("errors") or []
            message = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
        except (ValueError, AttributeError, TypeError):
            message = r.text[:200].strip()
        if r.status_code == 403 or "DENIED" in message:
            return RegistryAuthError(
                f"registry {self._ref.registry} denied the push of {what} to {self._ref.name}: "
                f"{message or 'HTTP 403'}; check that the user may push to this repository"
            )
        return ImageError(
            f"registry {self._ref.registry} answered HTTP {r.status_code} to {method} for "
            f"{what} of {self._ref.name}" + (f": {message}" if message else "")
        )


def _file_part(path: Path, offset: int, length: int) -> Callable[[], AsyncIterator[bytes]]:
    """A fresh stream of `length` bytes of `path` from `offset`, each time it is called."""

    async def stream() -> AsyncIterator[bytes]:
        with open(path, "rb") as f:
            f.seek(offset)
            left = length
            while left:
                chunk = await anyio.to_thread.run_sync(f.read, min(_READ, left))
                if not chunk:
                    raise ImageError(f"blob {path.name} ends early; the blob store is corrupt")
                left -= len(chunk)
                yield chunk

    return stream
