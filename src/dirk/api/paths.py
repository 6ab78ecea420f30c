"""Path rules of the API: container paths resolve against the workdir, directory paths stay
inside their directory, and `${VAR}` expansion the way Dagger's `expand` arguments do it."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping

from dirk.errors import InvalidArgumentError


def container_path(workdir: str, path: str) -> str:
    """`path` in a container: relative paths resolve against `workdir` ("/" when unset)."""
    if not path:
        raise InvalidArgumentError("a container path must not be empty")
    return "/" + posixpath.normpath(posixpath.join(workdir or "/", path)).lstrip("/")


def inside(base: str, path: str) -> str:
    """`path` below the directory `base` (both absolute after this); a leading "/" in `path`
    still means "from `base`". Raises when `..` leaves `base`."""
    joined = posixpath.normpath(posixpath.join(base, path.lstrip("/") or "."))
    joined = "/" + joined.lstrip("/")
    if base != "/" and joined != base and not joined.startswith(base.rstrip("/") + "/"):
        raise InvalidArgumentError(
            f"path {path!r} leaves its directory {base!r}: use a path inside the directory"
        )
    return joined


def relative_to(base: str, path: str) -> str | None:
    """`path` relative to `base` ("" for `base` itself), or None when it is not below it."""
    if path == base:
        return ""
    prefix = base.rstrip("/") + "/"
    if path.startswith(prefix):
        return path[len(prefix) :]
    return None


_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def expand(text: str, env: Mapping[str, str]) -> str:
    """`$VAR` and `${VAR}` replaced by their values in `env` (unset: empty)."""
    return _VAR.sub(lambda m: env.get(m.group(1) or m.group(2), ""), text)
