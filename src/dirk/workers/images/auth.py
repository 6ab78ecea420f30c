"""Registry credentials from Docker's config.json, and WWW-Authenticate challenges.

Only the static `auths` entries are read (what `docker login` writes when no credential helper
is configured); credential helpers are not run, and an error says so when one is configured.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import contextvars
import hashlib
import json
import os
import pwd
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import attrs

from dirk.errors import RegistryAuthError
from dirk.workers.images.reference import DOCKER_HUB

_HUB_KEYS = frozenset({"index.docker.io", "docker.io", DOCKER_HUB})


@attrs.frozen
class Credentials:
    username: str
    password: str = attrs.field(repr=False)


@attrs.frozen
class Challenge:
    """A parsed WWW-Authenticate header: scheme ("bearer"/"basic") and its parameters."""

    scheme: str
    params: tuple[tuple[str, str], ...]

    def get(self, key: str) -> str | None:
        return dict(self.params).get(key)


_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?')


def parse_challenge(header: str) -> Challenge | None:
    """Parse `Bearer realm="...",service="...",scope="..."` or `Basic realm="..."`."""
    scheme, _, rest = header.strip().partition(" ")
    if not scheme:
        return None
    params: list[tuple[str, str]] = []
    pos = 0
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if not m or m.end() == pos:
            break
        value = m.group(2) if m.group(2) is not None else m.group(3)
        params.append((m.group(1).lower(), re.sub(r"\\(.)", r"\1", value)))
        pos = m.end()
    return Challenge(scheme.lower(), tuple(params))


def default_docker_config() -> Path:
    """`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json` (Docker's own rule)."""
    base = os.environ.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def docker_config_of(uid: int, env: Mapping[str, str]) -> Path | None:
    """The Docker config a user's client would read: `$DOCKER_CONFIG/config.json` from the
    client's environment, else `config.json` in `.docker` of the user's home; None for a
    user without a home."""
    base = env.get("DOCKER_CONFIG")
    if base:
        return Path(base) / "config.json"
    try:
        home = pwd.getpwuid(uid).pw_dir
    except KeyError:
        return None
    return Path(home) / ".docker" / "config.json" if home else None


#: The Docker config whose credentials registry calls use now, when not the engine's own: a
#: session's owner's (set around a request's registry calls, see `using_docker_config`).
_active: contextvars.ContextVar[DockerConfig | None] = contextvars.ContextVar(
    "dirk_docker_config", default=None
)


@contextlib.contextmanager
def using_docker_config(config: DockerConfig | None) -> Iterator[None]:
    """Registry calls in this block (and the tasks it starts) use `config`'s credentials;
    None leaves the engine's own."""
    if config is None:
        yield
        return
    token = _active.set(config)
    try:
        yield
    finally:
        _active.reset(token)


def active_docker_config() -> DockerConfig | None:
    return _active.get()


def _registry_key(key: str) -> str:
    """ "https://index.docker.io/v1/" -> "registry-1.docker.io"; "http://h:5000/" -> "h:5000"."""
    host = re.sub(r"^[a-z]+://", "", key.strip()).split("/", 1)[0].lower()
    return DOCKER_HUB if host in _HUB_KEYS else host


@attrs.frozen
class DockerConfig:
    """The parts of a Docker config.json that matter to pulling: static auths and helpers."""

    path: Path
    auths: tuple[tuple[str, Credentials], ...] = ()
    helpers: tuple[tuple[str, str], ...] = ()  # registry -> helper; "*" for credsStore

    @classmethod
    def load(cls, path: Path) -> DockerConfig:
        try:
            raw = path.read_text()
        except FileNotFoundError:
            return cls(path)
        except OSError as exc:
            raise RegistryAuthError(f"cannot read Docker config {path}: {exc}") from None
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise RegistryAuthError(
                f"Docker config {path} is not valid JSON ({exc}); fix or remove it"
            ) from None
        if not isinstance(data, dict):
            raise RegistryAuthError(f"Docker config {path} is not a JSON object; fix or remove it")
        auths: list[tuple[str, Credentials]] = []
        for key, entry in (data.get("auths") or {}).items():
            creds = _entry_credentials(entry, key, path)
            if creds is not None:
                auths.append((_registry_key(key), creds))
        helpers = [(_registry_key(k), str(v)) for k, v in (data.get("credHelpers") or {}).items()]
        if data.get("credsStore"):
            helpers.append(("*", str(data["credsStore"])))
        return cls(path, tuple(auths), tuple(helpers))

    def credentials(self, registry: str) -> Credentials | None:
        registry = _registry_key(registry)
        for key, creds in self.auths:
            if key == registry:
                return creds
        return None

    def identity(self, registry: str) -> str:
        """Who calls `registry` with this config: a digest of its credentials there ("" for
        anonymous), so a token one user's credentials earned is never sent for another."""
        creds = self.credentials(registry)
        if creds is None:
            return ""
        return hashlib.sha256(f"{creds.username}\0{creds.password}".encode()).hexdigest()[:32]

    def helper(self, registry: str) -> str | None:
        registry = _registry_key(registry)
        found = dict(self.helpers)
        return found.get(registry) or found.get("*")

    def missing_credentials_hint(self, registry: str) -> str:
        """What to tell a user whose registry wants credentials we do not have."""
        helper = self.helper(registry)
        if helper:
            return (
                f"{self.path} configures the credential helper docker-credential-{helper} for "
                f"{registry}, but dirk does not run credential helpers; add a static entry "
                f'"auths": {{"{registry}": {{"auth": "<base64 user:password>"}}}} to {self.path}'
            )
        return (
            f"no credentials for {registry} in {self.path}; run `docker login {registry}` (without "
            f'a credential store) or add "auths": {{"{registry}": {{"auth": "<base64 '
            'user:password>"}} to it'
        )


def _entry_credentials(entry: object, key: str, path: Path) -> Credentials | None:
    if not isinstance(entry, dict):
        return None
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            decoded = base64.b64decode(auth, validate=False).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise RegistryAuthError(
                f'the "auth" of {key!r} in {path} is not base64 of "user:password"; log in again'
            ) from None
        user, sep, password = decoded.partition(":")
        if not sep:
            raise RegistryAuthError(
                f'the "auth" of {key!r} in {path} does not decode to "user:password"; log in again'
            )
        return Credentials(user, password)
    name, secret = entry.get("username"), entry.get("password")
    if isinstance(name, str) and isinstance(secret, str) and name:
        return Credentials(name, secret)
    return None
