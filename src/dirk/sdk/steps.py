"""A chain of calls as a user reads it: `container → from python:3.11 → with_exec pytest`.

Used in failure reports. Method names are the SDK's (`with_exec`, `from_` shown as `from`);
only arguments that say which step this is are shown (an address, a path, a command, a name,
a URL with its credentials masked), never values that may be secret (an env variable's value,
a secret's plaintext, file contents).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from dirk.sdk.query import Call

#: Arguments that identify a step, in the order they are shown.
SHOWN_ARGS = ("address", "args", "path", "name", "url", "key", "target", "ref", "platform")
#: Calls that add nothing to a reader: loading by ID, evaluating.
HIDDEN_CALLS = frozenset({"sync", "id"})
#: Longest text shown for one argument.
ARG_LIMIT = 100
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")
_CREDENTIALS = re.compile(r"(://)[^/@\s]+@")


def method_name(field: str) -> str:
    """`withExec` -> `with_exec`."""
    return _CAMEL.sub("_", field).lower()


def _clip(text: str) -> str:
    return text if len(text) <= ARG_LIMIT else text[: ARG_LIMIT - 1] + "…"


def _arg_text(name: str, value: Any) -> str | None:
    if isinstance(value, str):
        text = _CREDENTIALS.sub(r"\1***@", value) if name == "url" else value
        return _clip(text)
    if isinstance(value, tuple) and all(isinstance(v, str) for v in value):
        return _clip(command_text(value))
    return None


def command_text(args: Sequence[str]) -> str:
    """A command line as a reader copies it: `sh -c "exit 3"`."""
    return " ".join(_word(arg) for arg in args)


def _word(arg: str) -> str:
    """A command's argument as a reader copies it: quoted (JSON-style) only when needed."""
    if arg and not any(c.isspace() or c in "\"'\\$`;&|<>()*?[]{}#~" for c in arg):
        return arg
    return json.dumps(arg, ensure_ascii=False)


def call_text(call: Call) -> str:
    """One call: its method name and the arguments that identify it."""
    given = dict(call.args)
    shown = [
        text
        for name in SHOWN_ARGS
        if name in given and (text := _arg_text(name, given[name])) is not None
    ]
    return " ".join([method_name(call.field), *shown])


def chain_text(chain: Sequence[Call], arrow: str = "→") -> str:
    """The whole chain; a `node(id:)` it starts from (an object loaded back) reads `…`."""
    parts = []
    for index, call in enumerate(chain):
        if call.field == "node":
            parts.append("…")
        elif call.field not in HIDDEN_CALLS or index == len(chain) - 1:
            parts.append(call_text(call))
    return f" {arrow} ".join(parts)
