"""Reading a secret's value from the client's side of a session: `Query.secret(uri:)`.

The providers, as Dagger has them: `env://NAME` (the environment the client program sent when
it opened the session, not the engine's), `file://PATH` (a file of the host, relative to the
session's working directory, `~` being the client's HOME), and `cmd://COMMAND` (run with
`sh -c` on the host, in the working directory and the client's environment; its stdout,
unchanged, is the value). File reads and commands run with the rights of the session's owner
(the user who opened it), never the engine's. Values are returned to the caller only: nothing
here logs or stores them.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from dirk.errors import SecretError
from dirk.workers.hostaccess import HostAccess, HostUser

#: The largest secret value accepted (Dagger's limit for setSecret).
MAX_SECRET_BYTES = 128_000
SCHEMES = ("env", "file", "cmd")
#: How much of a failed command's stderr its error shows.
_STDERR_TAIL = 500


def split_uri(uri: str) -> tuple[str, str]:
    """(scheme, rest) of a secret URI, checked to be one dirk can read."""
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme not in SCHEMES:
        raise SecretError(
            f"secret URI {uri!r}: unknown scheme; use env://NAME, file://PATH or cmd://COMMAND"
        )
    if not rest:
        raise SecretError(f"secret URI {uri!r} names nothing: put a name, path or command after //")
    return scheme, rest


async def read_secret_uri(
    uri: str, *, env: Mapping[str, str], workdir: Path, owner: HostUser | None = None
) -> bytes:
    """The value `uri` stands for now; `owner` is whose rights host access has (None: the
    engine's own, as when the engine's user opened the session)."""
    scheme, rest = split_uri(uri)
    if owner is not None and owner.uid == os.geteuid():
        owner = None
    if scheme == "env":
        value = _from_env(uri, rest, env)
    elif scheme == "file":
        value = await _read_as(owner, _from_file, uri, rest, env, workdir)
    else:
        value = await _from_command(uri, rest, env, workdir, owner)
    return checked_size(uri, value)


async def _read_as(
    owner: HostUser | None, read: Callable[[str, str, Mapping[str, str], Path], bytes], *args: Any
) -> bytes:
    if owner is None:
        return await anyio.to_thread.run_sync(read, *args)
    # The kernel checks the owner's rights on the open itself.
    return await HostAccess.for_user(owner).run(read, *args)


def checked_size(what: str, value: bytes) -> bytes:
    if len(value) > MAX_SECRET_BYTES:
        raise SecretError(
            f"secret {what!r} is {len(value)} bytes, more than the {MAX_SECRET_BYTES} bytes a "
            "secret may hold: mount a file with the data instead"
        )
    return value


def _from_env(uri: str, name: str, env: Mapping[str, str]) -> bytes:
    value = env.get(name)
    if value is None:
        raise SecretError(
            f"secret URI {uri!r}: the variable {name} is not set in the environment of the "
            "program that opened the session; export it before starting the program"
        )
    return value.encode("utf-8", errors="surrogateescape")


def _from_file(uri: str, raw: str, env: Mapping[str, str], workdir: Path) -> bytes:
    if raw == "~" or raw.startswith("~/"):
        home = env.get("HOME")
        if not home:
            raise SecretError(
                f"secret URI {uri!r}: ~ needs HOME in the environment of the program that "
                "opened the session; give an absolute path instead"
            )
        raw = home + raw[1:]
    path = Path(os.path.normpath(workdir / raw))
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise SecretError(
            f"secret URI {uri!r}: no file {path} (relative paths start at the session's "
            f"working directory {workdir}); create it or fix the path"
        ) from None
    except OSError as exc:
        raise SecretError(f"secret URI {uri!r}: cannot read {path}: {exc.strerror}") from None


async def _from_command(
    uri: str, command: str, env: Mapping[str, str], workdir: Path, owner: HostUser | None
) -> bytes:
    as_owner: dict[str, Any] = {}
    if owner is not None:
        as_owner = {"user": owner.uid, "group": owner.gid, "extra_groups": owner.groups}
    try:
        process = await anyio.run_process(
            ["sh", "-c", command],
            check=False,
            cwd=workdir,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            **as_owner,
        )
    except OSError as exc:
        raise SecretError(f"secret URI {uri!r}: cannot run the command: {exc}") from None
    if process.returncode != 0:
        stderr = process.stderr[-_STDERR_TAIL:].decode("utf-8", errors="replace").strip()
        raise SecretError(
            f"secret URI {uri!r}: the command exited with code {process.returncode} in "
            f"{workdir}" + (f": {stderr}" if stderr else "") + "; fix the command"
        )
    return process.stdout
