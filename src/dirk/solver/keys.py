"""Cache keys: a digest of an operation's definition and of its inputs' keys.

What a key covers is the contract of the whole cache: content, never where it came from. Host
paths and image tags are left out (the content digest and manifest digest stand for them);
file contents given inline are hashed; secret values never reach an operation at all (a
`SecretRef` counts by its name, URI or chosen cache key).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import attrs

from dirk.solver.ops import (
    AnyService,
    DockerImageSave,
    Exec,
    ExecMount,
    GitCheckout,
    HostDirectory,
    HostFile,
    HttpFetch,
    ImagePull,
    Op,
    Ref,
    SecretRef,
)

#: Bump when the meaning of an operation changes, so old cache entries stop matching.
KEY_VERSION = 1

#: Fields that say where content came from rather than what it is.
_PROVENANCE_FIELDS: dict[type[Any], frozenset[str]] = {
    HostDirectory: frozenset({"path", "owner"}),
    HostFile: frozenset({"path", "owner"}),
    # Where the image came from (the reference, the service its registry ran as).
    ImagePull: frozenset({"reference", "registry_service"}),
    # Which session's secret it is; the key covers the secret's name, never its value.
    SecretRef: frozenset({"handle"}),
    ExecMount: frozenset({"host_path"}),
    # What a failed run opens for debugging, not what the step computes.
    Exec: frozenset({"debug_shell"}),
    GitCheckout: frozenset({"url", "kind", "name", "auth", "service"}),
    HttpFetch: frozenset({"url", "checksum", "auth_header", "service"}),
    DockerImageSave: frozenset({"socket", "name"}),
}
#: Fields of (name, value) pairs whose values stay out of the key: Dagger's volatile variables.
_NAMES_ONLY_FIELDS: dict[type[Any], frozenset[str]] = {Exec: frozenset({"volatile_env"})}


def provenance_fields(cls: type[Any]) -> frozenset[str]:
    """The fields of `cls` a key leaves out: where content came from, not what it is."""
    return _PROVENANCE_FIELDS.get(cls, frozenset())


def cache_key(op: Op | AnyService, input_keys: Sequence[str]) -> str:
    """The key of `op` (or a service's digest), given the keys of `op.inputs()` in order."""
    keys = iter(input_keys)
    body = {"v": KEY_VERSION, "op": type(op).__name__, "def": _encode(op, keys)}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _encode(value: Any, keys: Any) -> Any:
    if isinstance(value, Ref):
        return {"input": next(keys), "output": value.output}
    if isinstance(value, bytes):
        return {"sha256": hashlib.sha256(value).hexdigest(), "len": len(value)}
    if isinstance(value, tuple):
        return [_encode(v, keys) for v in value]
    if attrs.has(type(value)):
        skip = _PROVENANCE_FIELDS.get(type(value), frozenset())
        names_only = _NAMES_ONLY_FIELDS.get(type(value), frozenset())
        # Fields are visited in declaration order, which is also the order of `inputs()`.
        return {
            f.name: (
                [name for name, _ in getattr(value, f.name)]
                if f.name in names_only
                else _encode(getattr(value, f.name), keys)
            )
            for f in attrs.fields(type(value))
            if f.name not in skip and not (f.name in names_only and not getattr(value, f.name))
        }
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"cannot encode {type(value).__name__} in a cache key")
