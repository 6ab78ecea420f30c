"""The secrets of one exec step, fetched at run time: what the container gets (variables and
files on a tmpfs) and the scrubber its output goes through before anyone sees or stores it.

The operation names each secret by `SecretRef` only; `plaintext` (the step's secret source,
by handle) gives the values, which live in this object for the step's run and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import attrs

from dirk.solver.job import SessionAccess
from dirk.solver.ops import Exec
from dirk.solver.owners import resolve_owner
from dirk.solver.scrub import Scrubber, StreamScrubber
from dirk.workers.executor.spec import SecretFile

Stream = Literal["stdout", "stderr"]
OutputSink = Callable[[Stream, bytes], None]


@attrs.frozen
class ExecSecrets:
    env: tuple[str, ...] = attrs.field(default=(), repr=False)
    files: tuple[SecretFile, ...] = ()
    scrubber: Scrubber = attrs.field(factory=lambda: Scrubber(()), repr=False)

    def scrubbed_output(self, sink: OutputSink) -> ScrubbedOutput:
        """A scrubber of the process's two streams that passes what it lets out to `sink`."""
        return ScrubbedOutput(self.scrubber, sink)


class ScrubbedOutput:
    """Both streams of one process, scrubbed as they arrive: `on_output` is the executor's
    callback; `finish` lets out what was held back and gives the scrubbed streams and their
    arrival order (runs of (0 = stdout or 1 = stderr, byte count), as the executor counts
    them), so combined output lines up with the scrubbed bytes."""

    def __init__(self, scrubber: Scrubber, sink: OutputSink) -> None:
        self._sink = sink
        self._streams: dict[Stream, StreamScrubber] = {
            "stdout": scrubber.stream(),
            "stderr": scrubber.stream(),
        }
        self._data: dict[Stream, list[bytes]] = {"stdout": [], "stderr": []}
        self._order: list[list[int]] = []

    def on_output(self, stream: Stream, chunk: bytes) -> None:
        self._let_out(stream, self._streams[stream].feed(chunk))

    def finish(self) -> tuple[bytes, bytes, tuple[tuple[int, int], ...]]:
        for stream, scrubber in self._streams.items():
            self._let_out(stream, scrubber.finish())
        order = tuple((stream, count) for stream, count in self._order)
        return b"".join(self._data["stdout"]), b"".join(self._data["stderr"]), order

    def _let_out(self, stream: Stream, data: bytes) -> None:
        if not data:
            return
        self._data[stream].append(data)
        index = 0 if stream == "stdout" else 1
        if self._order and self._order[-1][0] == index:
            self._order[-1][1] += len(data)
        else:
            self._order.append([index, len(data)])
        self._sink(stream, data)


NO_SECRETS = ExecSecrets()


def exec_secrets(op: Exec, root: Path, plaintext: Callable[[str], bytes]) -> ExecSecrets:
    """The values of `op`'s secrets (from `plaintext`, by handle), as variables and files for
    the container whose root filesystem is mounted at `root` (owners resolve in its
    /etc/passwd and /etc/group, like other owners)."""
    refs = op.secrets()
    if not refs:
        return NO_SECRETS
    values = {ref: plaintext(ref.handle) for ref in refs}
    scrubbed = list(values.values())
    env = []
    for name, ref in op.secret_env:
        text = values[ref].decode("utf-8", errors="replace")
        scrubbed.append(text.encode())
        env.append(f"{name}={text}")
    files = []
    for mount in op.mounts:
        if mount.kind != "secret" or mount.secret is None:
            continue
        uid, gid = resolve_owner(root, mount.owner) if mount.owner else (0, 0)
        files.append(SecretFile(mount.target, values[mount.secret], uid, gid, mount.mode))
    return ExecSecrets(tuple(env), tuple(files), Scrubber(scrubbed))


def with_session_access(secrets: ExecSecrets, access: SessionAccess) -> ExecSecrets:
    """`secrets` plus what a nested command needs to reach the engine as its session:
    DAGGER_SESSION_PORT and DAGGER_SESSION_TOKEN, set at run time like secret variables
    (never in the operation or its key), the token scrubbed from the output."""
    env = (
        *secrets.env,
        f"DAGGER_SESSION_PORT={access.port}",
        f"DAGGER_SESSION_TOKEN={access.token}",
    )
    values = [*secrets.scrubber.values, access.token.encode()]
    return ExecSecrets(env, secrets.files, Scrubber(values))
