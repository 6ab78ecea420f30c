"""Call identities and the opaque ID strings minted from them.

An object's identity is a digest of its parent's identity, the field that made it and that
field's arguments with every default filled in: the same chain, re-sent by a client for each
leaf, names the same object. An ID is `dirk:<Type>:<identity>`, never numeric (the Python SDK
sends integer-looking IDs as Int literals), and means something only in the session that
minted it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from typing import Any

from dirk.errors import UnknownIDError

#: The identity of the root `Query` object, the parent of every chain.
ROOT = "query"
ID_PREFIX = "dirk"
_ID_RE = re.compile(r"^dirk:([A-Za-z][A-Za-z0-9_]*):([a-z2-7]{52})$")


def canonical(value: Any) -> str:
    """JSON with sorted keys and no whitespace: equal values give equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _b32(digest: bytes) -> str:
    return base64.b32encode(digest).decode("ascii").rstrip("=").lower()


def identity(parent: str, field: str, args: Mapping[str, Any]) -> str:
    """The identity of `parent.field(args)`; `args` must hold every argument of the field."""
    body = canonical([parent, field, dict(args)])
    return _b32(hashlib.sha256(body.encode("utf-8")).digest())


def keyed_identity(key: bytes, parent: str, field: str, args: Mapping[str, Any]) -> str:
    """Like `identity`, but keyed (HMAC): for arguments that must not be guessable from the ID
    (secret values)."""
    body = canonical([parent, field, dict(args)])
    return _b32(hmac.new(key, body.encode("utf-8"), hashlib.sha256).digest())


#: The identity of the `Query` object in its ID (`Query.id`): one per engine, like `ROOT`.
QUERY_IDENT = identity("", "Query", {})


def format_id(type_name: str, ident: str) -> str:
    return f"{ID_PREFIX}:{type_name}:{ident}"


def parse_id(text: object, expected: str | None = None) -> tuple[str, str]:
    """(type name, identity) of an ID string; `expected` checks the type."""
    match = _ID_RE.match(text) if isinstance(text, str) else None
    if match is None:
        raise UnknownIDError(
            f"unknown ID {_short(text)}: not an ID minted by dirk; IDs are valid only in the "
            "session that created them"
        )
    type_name, ident = match.group(1), match.group(2)
    if expected is not None and type_name != expected:
        raise UnknownIDError(
            f"ID {_short(text)} is a {type_name}, but a {expected} is expected here"
        )
    return type_name, ident


def _short(text: object) -> str:
    shown = repr(text)
    return shown if len(shown) <= 80 else shown[:77] + "..."
