"""A session's secrets: where their values live (in memory, for the session's life only).

Operations name a secret by a `SecretRef` (cache id + handle), never by value. The store is the
solve's secret source: a step that needs a value asks `plaintext(ref.handle)` at run time.
Values set with `setSecret` are kept from the call; values behind a URI are read by `load`,
which the API calls when a secret is put to use (attached to a container, asked for its
plaintext), never for `id`; then kept for the session, so a command behind `cmd://` runs once.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path

import attrs

from dirk.api.ids import ROOT, keyed_identity
from dirk.errors import SecretError
from dirk.solver.flights import Flights
from dirk.solver.ops import SecretRef
from dirk.workers.hostaccess import HostUser
from dirk.workers.hostsecrets import checked_size, read_secret_uri, split_uri


@attrs.frozen
class SecretEntry:
    """What the store knows of one secret besides its value."""

    name: str
    uri: str
    ref: SecretRef


class SecretStore:
    """The secrets of one session, by handle; also the solver's `SecretSource` for it."""

    def __init__(
        self, env: Mapping[str, str], workdir: Path, owner: HostUser | None = None
    ) -> None:
        self._env = dict(env)
        self._workdir = workdir
        self._owner = owner
        #: Keys the handles, so a handle (in IDs and operations) says nothing about a value.
        self._key = secrets.token_bytes(32)
        self._entries: dict[str, SecretEntry] = {}
        self._values: dict[str, bytes] = {}
        self._flights = Flights()

    def set_plaintext(self, name: str, plaintext: bytes) -> SecretEntry:
        """`setSecret`: cached results are shared by every secret of this name (Dagger's rule:
        a new value of a known secret does not re-run the steps that use it)."""
        if not name:
            raise SecretError("setSecret needs a name: the name is what identifies the secret")
        checked_size(name, plaintext)
        handle = keyed_identity(self._key, ROOT, "setSecret", {"name": name, "v": plaintext.hex()})
        entry = SecretEntry(name, "", SecretRef("name:" + name, handle))
        self._values.setdefault(handle, plaintext)
        return self._entries.setdefault(handle, entry)

    def from_uri(self, uri: str, cache_key: str | None) -> SecretEntry:
        """`secret(uri:, cacheKey:)`: checked now, read on first use; cached results follow
        `cache_key` when given, else the URI."""
        split_uri(uri)
        cache_id = "key:" + cache_key if cache_key else "uri:" + uri
        handle = keyed_identity(self._key, ROOT, "secret", {"uri": uri, "cacheKey": cache_key})
        return self._entries.setdefault(handle, SecretEntry(uri, uri, SecretRef(cache_id, handle)))

    def entry(self, ref: SecretRef) -> SecretEntry:
        entry = self._entries.get(ref.handle)
        if entry is None:
            raise SecretError(
                f"{ref.describe()} is not known to this session: secrets are valid only in the "
                "session that created them"
            )
        return entry

    async def load(self, ref: SecretRef) -> bytes:
        """The value of the secret `ref` names (read from its URI the first time)."""
        entry = self.entry(ref)
        known = self._values.get(ref.handle)
        if known is not None:
            return known

        async def read() -> bytes:
            value = await read_secret_uri(
                entry.uri, env=self._env, workdir=self._workdir, owner=self._owner
            )
            self._values[ref.handle] = value
            return value

        return await self._flights.run(ref.handle, read)

    def plaintext(self, secret_id: str) -> bytes:
        """The solver's `SecretSource`: the value of a secret by handle, once `load`ed."""
        value = self._values.get(secret_id)
        if value is None:
            raise SecretError(
                f"secret {secret_id[:12]}... is not known to this session: secrets are valid "
                "only in the session that created them"
            )
        return value
