"""One hierarchy for every error dirk raises, engine side and client side.

Every message names the problem and, where there is one, the fix. Catch `DirkError` (or its
Dagger name, `DaggerError`) to catch everything dirk raises; catch a subclass to handle one kind
of failure.

Every class has its own stable `code`: the engine sends it with the error
(`extensions._type`, see `dirk.wire.codes`) and dirk's SDK raises the same class again, so
`except ImageNotFoundError` works in a program as it does inside the engine. Codes are part of
the wire contract: never change or reuse one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar, NamedTuple

#: How much of each output stream an exec error keeps (Dagger keeps the last 100 KiB too).
OUTPUT_TAIL_BYTES = 100 * 1024
#: How much of the tail goes into the human-readable message.
MESSAGE_TAIL_LINES = 20


class DirkError(Exception):
    """Base class of every error raised by dirk."""

    code: ClassVar[str] = "DIRK_ERROR"


#: Dagger's name for the base class, so that `except dagger.DaggerError` ports unchanged.
DaggerError = DirkError


# --- client side -------------------------------------------------------------------------------


class ClientConnectionError(DirkError):
    """The client could not reach an engine (wrong URL, engine down, refused)."""

    code = "CLIENT_CONNECTION_ERROR"


class ProvisionError(DirkError):
    """No engine was running and one could not be started; the message says why and what to do."""

    code = "PROVISION_ERROR"


class SessionAuthError(ClientConnectionError):
    """The engine refused the session token."""

    code = "SESSION_AUTH_ERROR"


class QueryErrorValue(NamedTuple):
    """One entry of a GraphQL answer's `errors` (Dagger's `QueryError.error` has the same
    attributes): the message, the path of the field that failed and the extensions."""

    message: str
    path: list[str | int] | None = None
    locations: list[dict[str, int]] | None = None
    #: Read-only when the engine gave none (a shared empty mapping).
    extensions: Mapping[str, Any] = MappingProxyType({})

    def __str__(self) -> str:
        return self.message


class QueryError(DirkError):
    """The engine answered a query with an error.

    `message` and `path` describe the (first) failure; `errors` holds every entry of the answer
    and `error` the first, with the same attributes as in Dagger's SDK.
    """

    code = "QUERY_ERROR"
    #: Set by dirk's SDK when a leaf fails: the pipeline that led to the failure, as the
    #: program built it (`container → from python:3.11 → with_exec pytest`), and the lines of
    #: the program that built and awaited it (`ci.py:12 in test (with_exec), awaited at ...`).
    pipeline: str = ""
    location: str = ""

    def __init__(
        self,
        message: str,
        path: Sequence[str | int] | None = None,
        *,
        errors: Sequence[QueryErrorValue] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = list(path or [])
        self.errors = list(errors or [QueryErrorValue(message, self.path or None)])

    @property
    def error(self) -> QueryErrorValue:
        """The first error of the answer."""
        return self.errors[0]


class ExecError(QueryError):
    """A command in a container exited with an unexpected code.

    Carries the command, the exit code and the tail of both output streams (Dagger's attribute
    names: `command`, `exit_code`, `stdout`, `stderr`), so the failure can be understood
    without re-running anything.
    """

    code = "EXEC_ERROR"

    def __init__(
        self,
        command: Sequence[str],
        exit_code: int,
        stdout: str,
        stderr: str,
        message: str | None = None,
        path: Sequence[str | int] | None = None,
        *,
        errors: Sequence[QueryErrorValue] | None = None,
    ) -> None:
        self.command = list(command)
        self.exit_code = exit_code
        self.stdout = stdout
        self.stderr = stderr
        super().__init__(
            message or exec_error_message(self.command, exit_code), path, errors=errors
        )

    def __str__(self) -> str:
        parts = [self.message]
        for name, text in (("stdout", self.stdout), ("stderr", self.stderr)):
            tail = _tail_lines(text)
            if tail:
                parts.append(f"{name} (last lines):\n{tail}")
        return "\n".join(parts)


def exec_error_message(command: Sequence[str], exit_code: int) -> str:
    """The one-line summary of a failed exec, in Dagger's (BuildKit's) words:
    `process "sh -c exit 3" did not complete successfully: exit code: 3`."""
    shown = json.dumps(" ".join(command), ensure_ascii=False)
    return f"process {shown} did not complete successfully: exit code: {exit_code}"


def _tail_lines(text: str) -> str:
    lines = text.rstrip("\n").splitlines()
    return "\n".join("  " + line for line in lines[-MESSAGE_TAIL_LINES:])


class EngineVersionWarning(UserWarning):
    """The engine runs another dirk version than this client (warned once per process):
    restart the engine (`dirk engine stop`) so that both are the same version."""


# --- engine side -------------------------------------------------------------------------------


class InvalidArgumentError(QueryError):
    """An argument of a pipeline call is malformed (bad path, bad reference, bad mode)."""

    code = "INVALID_ARGUMENT"


class ImageError(QueryError):
    """Base class for failures to resolve, pull or unpack an image."""

    code = "IMAGE_ERROR"


class ImageReferenceError(ImageError, InvalidArgumentError):
    """An image reference does not parse."""

    code = "IMAGE_REFERENCE_INVALID"


class ImageNotFoundError(ImageError):
    """The registry has no such repository, tag or digest."""

    code = "IMAGE_NOT_FOUND"


class RegistryUnreachableError(ImageError):
    """The registry did not answer (DNS, refused connection, timeout, TLS)."""

    code = "REGISTRY_UNREACHABLE"


class RegistryAuthError(ImageError):
    """The registry refused our credentials or asked for credentials we do not have."""

    code = "REGISTRY_AUTH_FAILED"


class DigestMismatchError(ImageError):
    """Downloaded content does not match the digest that names it; nothing was stored."""

    code = "DIGEST_MISMATCH"


class UnsupportedMediaTypeError(ImageError):
    """A manifest or layer uses a media type dirk cannot handle."""

    code = "UNSUPPORTED_MEDIA_TYPE"


class PlatformNotFoundError(ImageError):
    """An image index has no manifest for the requested platform."""

    code = "PLATFORM_NOT_FOUND"


class ExecutorError(QueryError):
    """A container could not be set up or started (runtime missing, mount failed, ...)."""

    code = "EXECUTOR_ERROR"


class CommandNotFoundError(ExecError, ExecutorError):
    """The command to run does not exist in the container's filesystem or PATH.

    Dagger reports this as a failed exec with exit code 1 and the lookup error on stderr; so
    does dirk (`except ExecError` catches it, and Dagger's SDKs see an exec error), with a
    message that also says what to do.
    """

    code = "COMMAND_NOT_FOUND"

    @classmethod
    def for_command(cls, command: Sequence[str], search_path: str) -> CommandNotFoundError:
        """The error for `command` whose executable is missing; `search_path` is its PATH."""
        name = command[0] if command else ""
        if "/" in name:  # run by path: no PATH lookup, as Dagger's init says it
            stderr = f"fork/exec {name}: no such file or directory\n"
            why = f"there is no executable file {name} in the container"
        else:
            stderr = f'exec: "{name}": executable file not found in $PATH\n'
            why = f'exec: "{name}": executable file not found in $PATH (PATH={search_path})'
        message = (
            f"{exec_error_message(command, 1)}: {why}; install it in an earlier step, fix the "
            "name, or set PATH with with_env_variable"
        )
        return cls(command, 1, "", stderr, message)

    def __str__(self) -> str:
        return self.message  # the engine wrote the stderr; the message already says it all


class ServiceError(QueryError):
    """A service (`Container.asService`) could not be started, reached or stopped."""

    code = "SERVICE_ERROR"


class ServiceStartError(ServiceError):
    """A service did not become healthy in time: some exposed TCP port did not accept a
    connection. The message names the service (hostname, command), its ports, the tail of
    its output and what to check."""

    code = "SERVICE_START_FAILED"


class ServiceExitedError(ExecError, ServiceStartError):
    """A service's command ended before the service was healthy (or while a client used it).

    A failed exec in Dagger's shape (`command`, `exit_code`, `stdout`, `stderr`), as Dagger
    reports a service that exits, so `except ExecError` and the released SDKs see one too."""

    code = "SERVICE_EXITED"

    def __str__(self) -> str:
        return self.message  # the engine put the output's tail into the message already


class SnapshotError(DirkError):
    """The snapshot store could not mount, commit or read a filesystem layer."""

    code = "SNAPSHOT_ERROR"


class StateError(DirkError):
    """The engine's on-disk state is unusable (permissions, corrupt database, disk full)."""

    code = "STATE_ERROR"


class HostPathError(InvalidArgumentError):
    """A path on the engine's host does not exist or is not of the expected kind."""

    code = "HOST_PATH_ERROR"


class SolveError(QueryError):
    """An operation of the pipeline failed; the message names the step.

    `cause` is the exception behind it inside the engine; in the SDK it is None (only the
    message and `step` cross the wire).
    """

    code = "SOLVE_ERROR"

    def __init__(self, step: str, cause: BaseException | None) -> None:
        self.step = step
        self.cause = cause
        super().__init__(f"{step}: {cause}")


class CancelledError(DirkError):
    """The run was cancelled before it finished."""

    code = "CANCELLED"


class EngineAlreadyRunningError(StateError):
    """Another engine holds the state directory; two engines must never share one."""

    code = "ENGINE_ALREADY_RUNNING"


class SnapshotPathError(InvalidArgumentError):
    """A path inside a filesystem (snapshot, directory, container root) is missing or of the
    wrong kind: a directory where a file is expected, a file in the middle of a path."""

    code = "PATH_ERROR"


class QueryLimitError(InvalidArgumentError):
    """A request is larger than the engine's limits (characters, tokens, fields); the message
    names the limit and the environment variable that raises it."""

    code = "QUERY_LIMIT"


class QueryTimeoutError(QueryError):
    """A query ran longer than the client's `Config.timeout`; the engine may still be working."""

    code = "QUERY_TIMEOUT"


class UnknownIDError(InvalidArgumentError):
    """An object ID is malformed, of the wrong type, or unknown to this session (IDs are valid
    only in the session that created them)."""

    code = "UNKNOWN_ID"


class NotSupportedError(QueryError):
    """The pipeline uses a field or an argument that dirk does not implement yet."""

    code = "NOT_SUPPORTED"


class SecretError(InvalidArgumentError):
    """A secret's value cannot be had: an unknown URI scheme, a variable or file that is
    missing, a command that failed, or a value too large. The message names the secret (never
    its value) and the fix."""

    code = "SECRET_ERROR"


class UnknownSecretError(SecretError):
    """A step asked for a secret its session does not hold (never set, or set in another
    session); the message names the secret."""

    code = "UNKNOWN_SECRET"


class PipelineError(QueryError):
    """The pipeline raised an error itself (`withError` with a non-empty message); the
    message is the pipeline's own."""

    code = "PIPELINE_ERROR"


class PatchError(InvalidArgumentError):
    """A patch (`withPatch`, `withPatchFile`) does not apply to the directory it is given."""

    code = "PATCH_ERROR"


class DockerfileError(InvalidArgumentError):
    """A Dockerfile cannot be built as written (syntax, unknown stage, unsupported instruction,
    missing source); the message names the Dockerfile's line and instruction."""

    code = "DOCKERFILE_ERROR"


class SourceError(QueryError):
    """Content from outside the engine (a git remote, an HTTP URL) could not be fetched."""

    code = "SOURCE_ERROR"


class GitError(SourceError):
    """A git remote could not be read (unreachable, not a repository, git failed)."""

    code = "GIT_ERROR"


class GitRefNotFoundError(GitError):
    """A branch, tag, ref or commit does not exist in the repository."""

    code = "GIT_REF_NOT_FOUND"


class GitAuthError(GitError):
    """A git remote refused access: missing or wrong token, header, SSH key or host key."""

    code = "GIT_AUTH_FAILED"


class HttpFetchError(SourceError):
    """A URL could not be downloaded: unreachable, an HTTP error status, too large."""

    code = "HTTP_FETCH_ERROR"


class ChecksumMismatchError(HttpFetchError):
    """Downloaded content does not match the checksum the pipeline expects; nothing was kept."""

    code = "CHECKSUM_MISMATCH"


class InvalidJSONError(InvalidArgumentError):
    """Text given as JSON (`withContents`, a file read with `asJSON`) does not parse; the
    message says where."""

    code = "INVALID_JSON"


class JSONTypeError(InvalidArgumentError):
    """A JSON value is read as a type it is not (`asString` of a number, `fields` of an array,
    a lookup through a non-object)."""

    code = "JSON_TYPE_MISMATCH"


class JSONFieldNotFoundError(InvalidArgumentError):
    """`JSONValue.field(path:)` names a field the object does not have."""

    code = "JSON_FIELD_NOT_FOUND"


class PortForwardError(InvalidArgumentError):
    """A port cannot be forwarded as asked (`Service.up`, `Host.tunnel`, `Host.service`): the
    port is taken, privileged for a session not owned by root, out of range, or the mapping
    names no port."""

    code = "PORT_FORWARD_ERROR"


class TerminalError(QueryError):
    """An interactive terminal could not be opened or went away: no terminal is attached to
    the session (the program's stdin is not a tty, and it does not run under `dirk run -i`),
    or the client holding it disconnected while its shell ran."""

    code = "TERMINAL_ERROR"


class NestingError(QueryError):
    """`experimentalPrivilegedNesting` cannot give the command access to the engine: the
    engine serves no TCP port its session could be reached on (an in-process engine), or the
    command runs without a network."""

    code = "NESTING_ERROR"


class CachePolicyError(InvalidArgumentError):
    """A cache policy value (a size such as "20GB" or "75%", a duration such as "48h") is
    malformed; the message names the setting and the forms it takes."""

    code = "CACHE_POLICY_ERROR"


class CacheAccessError(QueryError):
    """Only the engine's own user may list or prune its cache (it holds every user's
    entries); the message says who may."""

    code = "CACHE_ACCESS_DENIED"
