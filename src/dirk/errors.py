"""One hierarchy for every error dirk raises, engine side and client side.

Every message names the problem and, where there is one, the fix. Catch `DirkError` to catch
everything dirk raises; catch a subclass to handle one kind of failure.
"""

from __future__ import annotations

from collections.abc import Sequence

#: How much of each output stream an exec error keeps (Dagger keeps the last 100 KiB too).
OUTPUT_TAIL_BYTES = 100 * 1024
#: How much of the tail goes into the human-readable message.
MESSAGE_TAIL_LINES = 20


class DirkError(Exception):
    """Base class of every error raised by dirk."""


# --- client side -------------------------------------------------------------------------------


class ClientConnectionError(DirkError):
    """The client could not reach an engine (wrong URL, engine down, refused)."""


class ProvisionError(DirkError):
    """No engine was running and one could not be started; the message says why and what to do."""


class SessionAuthError(ClientConnectionError):
    """The engine refused the session token."""


class QueryError(DirkError):
    """The engine answered a query with an error."""

    def __init__(self, message: str, path: Sequence[str | int] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = list(path or [])


class ExecError(QueryError):
    """A command in a container exited with an unexpected code.

    Carries the command, the exit code and the tail of both output streams, so the failure can
    be understood without re-running anything.
    """

    def __init__(
        self,
        cmd: Sequence[str],
        exit_code: int,
        stdout: str,
        stderr: str,
        message: str | None = None,
        path: Sequence[str | int] | None = None,
    ) -> None:
        self.cmd = list(cmd)
        self.exit_code = exit_code
        self.stdout = stdout
        self.stderr = stderr
        super().__init__(message or exec_error_message(self.cmd, exit_code), path)

    def __str__(self) -> str:
        parts = [self.message]
        for name, text in (("stdout", self.stdout), ("stderr", self.stderr)):
            tail = _tail_lines(text)
            if tail:
                parts.append(f"{name} (last lines):\n{tail}")
        return "\n".join(parts)


def exec_error_message(cmd: Sequence[str], exit_code: int) -> str:
    """The one-line summary shared by the engine's error and the client's exception."""
    return f"process {list(cmd)!r} did not complete successfully: exit code: {exit_code}"


def _tail_lines(text: str) -> str:
    lines = text.rstrip("\n").splitlines()
    return "\n".join("  " + line for line in lines[-MESSAGE_TAIL_LINES:])


# --- engine side -------------------------------------------------------------------------------


class InvalidArgumentError(QueryError):
    """An argument of a pipeline call is malformed (bad path, bad reference, bad mode)."""


class ImageError(QueryError):
    """Base class for failures to resolve, pull or unpack an image."""


class ImageReferenceError(ImageError, InvalidArgumentError):
    """An image reference does not parse."""


class ImageNotFoundError(ImageError):
    """The registry has no such repository, tag or digest."""


class RegistryUnreachableError(ImageError):
    """The registry did not answer (DNS, refused connection, timeout, TLS)."""


class RegistryAuthError(ImageError):
    """The registry refused our credentials or asked for credentials we do not have."""


class DigestMismatchError(ImageError):
    """Downloaded content does not match the digest that names it; nothing was stored."""


class UnsupportedMediaTypeError(ImageError):
    """A manifest or layer uses a media type dirk cannot handle."""


class PlatformNotFoundError(ImageError):
    """An image index has no manifest for the requested platform."""


class ExecutorError(QueryError):
    """A container could not be set up or started (runtime missing, mount failed, ...)."""


class CommandNotFoundError(ExecutorError):
    """The command to run does not exist in the container's filesystem or PATH."""


class SnapshotError(DirkError):
    """The snapshot store could not mount, commit or read a filesystem layer."""


class StateError(DirkError):
    """The engine's on-disk state is unusable (permissions, corrupt database, disk full)."""


class HostPathError(InvalidArgumentError):
    """A path on the engine's host does not exist or is not of the expected kind."""


class SolveError(QueryError):
    """An operation of the pipeline failed; the message names the step."""

    def __init__(self, step: str, cause: BaseException) -> None:
        self.step = step
        self.cause = cause
        super().__init__(f"{step}: {cause}")


class CancelledError(DirkError):
    """The run was cancelled before it finished."""


class EngineAlreadyRunningError(StateError):
    """Another engine holds the state directory; two engines must never share one."""


class SnapshotPathError(InvalidArgumentError):
    """A path inside a filesystem (snapshot, directory, container root) is missing or of the
    wrong kind: a directory where a file is expected, a file in the middle of a path."""


class QueryLimitError(InvalidArgumentError):
    """A request is larger than the engine's limits (characters, tokens, fields); the message
    names the limit and the environment variable that raises it."""


class QueryTimeoutError(QueryError):
    """A query ran longer than the client's `Config.timeout`; the engine may still be working."""


class UnknownIDError(InvalidArgumentError):
    """An object ID is malformed, of the wrong type, or unknown to this session (IDs are valid
    only in the session that created them)."""


class NotSupportedError(QueryError):
    """The pipeline uses a field or an argument that dirk does not implement yet."""


class SecretError(InvalidArgumentError):
    """A secret's value cannot be had: an unknown URI scheme, a variable or file that is
    missing, a command that failed, or a value too large. The message names the secret (never
    its value) and the fix."""


class PipelineError(QueryError):
    """The pipeline raised an error itself (`withError` with a non-empty message); the
    message is the pipeline's own."""


class PatchError(InvalidArgumentError):
    """A patch (`withPatch`, `withPatchFile`) does not apply to the directory it is given."""


class DockerfileError(InvalidArgumentError):
    """A Dockerfile cannot be built as written (syntax, unknown stage, unsupported instruction,
    missing source); the message names the Dockerfile's line and instruction."""
