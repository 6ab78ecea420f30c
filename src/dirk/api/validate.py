"""Checks every field's arguments share, applied before any resolver sees them.

Some values can never mean anything: a NUL byte cannot be part of a path, a command argument or
an environment variable (the kernel's strings end there, so it would silently cut the value),
a variable name cannot hold `=` or be empty, a mode is 12 bits, a line offset is not negative.
Each is refused here, naming the field, the argument and the fix, instead of being truncated
or failing later with a traceback.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dirk.errors import InvalidArgumentError

#: Arguments that carry data rather than names, so any byte is fine in them.
_DATA_ARGUMENTS = frozenset({"contents", "plaintext", "patch", "replacement", "search"})
#: Integer arguments that are file modes.
_MODE_ARGUMENTS = frozenset({"permissions", "mode"})
_MAX_MODE = 0o7777
#: Fields whose `name` argument names an environment variable.
_ENV_FIELDS = frozenset(
    {
        "withEnvVariable",
        "withoutEnvVariable",
        "withSecretVariable",
        "withoutSecretVariable",
        "withVolatileVariable",
        "withoutVolatileVariable",
        "envVariable",
    }
)


def check_arguments(type_name: str, field_name: str, args: Mapping[str, Any]) -> None:
    """Raise `InvalidArgumentError` for the first argument of `type_name.field_name` that can
    never be valid."""
    for name, value in args.items():
        where = f"{type_name}.{field_name}({name}:)"
        if name not in _DATA_ARGUMENTS:
            _check_no_nul(where, value)
        if isinstance(value, int) and not isinstance(value, bool):
            if name in _MODE_ARGUMENTS and not 0 <= value <= _MAX_MODE:
                raise InvalidArgumentError(
                    f"{where}: {value} is not a file mode; give one from 0 to 0o7777 "
                    f"({_MAX_MODE}), e.g. 0o644 (420) or 0o755 (493)"
                )
            if name.startswith(("offset", "limit")) and value < 0:
                raise InvalidArgumentError(
                    f"{where}: {value} is negative; give 0 or more (leave it out for no limit)"
                )
    if field_name in _ENV_FIELDS and "name" in args:
        _check_env_name(f"{type_name}.{field_name}(name:)", args["name"])


def _check_no_nul(where: str, value: Any) -> None:
    if isinstance(value, str):
        if "\0" in value:
            raise InvalidArgumentError(
                f"{where}: the value contains a NUL byte (\\0), which no path, command "
                "argument or environment variable can hold; remove it"
            )
    elif isinstance(value, list | tuple):
        for item in value:
            _check_no_nul(where, item)
    elif isinstance(value, dict):
        for item in value.values():
            _check_no_nul(where, item)


def _check_env_name(where: str, name: Any) -> None:
    if not isinstance(name, str):
        return
    if not name:
        raise InvalidArgumentError(f"{where}: an environment variable needs a name")
    if "=" in name:
        raise InvalidArgumentError(
            f"{where}: {name!r} cannot name an environment variable: names cannot hold '='. "
            f"To set {name.partition('=')[0]!r}, pass the part after '=' as the value"
        )
