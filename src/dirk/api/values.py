"""The immutable values behind the schema's objects: what a chain of calls has built so far.

Values hold operations (`dirk.solver.ops`), never results: building them runs nothing. A
`Handle` pairs a value with its call identity and GraphQL type name; it is what resolvers pass
around as the parent of the next field.
"""

from __future__ import annotations

from typing import Literal

import attrs

from dirk.solver.gc_plan import CacheEntry
from dirk.solver.ops import (
    AnyService,
    Exec,
    GitAuthRef,
    GitRefKind,
    HostServiceDef,
    Ref,
    SecretRef,
    ServiceBinding,
    ServiceDef,
    Sharing,
)

Stream = Literal["stdout", "stderr"]
MountSource = Literal["directory", "file", "cache", "tmpfs", "secret", "socket"]


@attrs.frozen
class Directory:
    """The tree at `subdir` (absolute, normalised) of the snapshot `ref` names."""

    ref: Ref
    subdir: str = "/"


@attrs.frozen
class File:
    """The file at `path` (absolute, normalised) of the snapshot `ref` names."""

    ref: Ref
    path: str


@attrs.frozen
class CacheVolume:
    """A named volume; `source` seeds it when it is first used."""

    key: str
    source: Directory | None = None
    sharing: Sharing = "SHARED"
    owner: str = ""


@attrs.frozen
class Mount:
    """A mount of a container at `target` (absolute): exactly one of the sources is set,
    according to `kind`."""

    target: str
    kind: MountSource
    directory: Directory | None = None
    file: File | None = None
    cache: CacheVolume | None = None
    readonly: bool = False
    sharing: Sharing = "SHARED"
    size: int = 0
    secret: SecretRef | None = None
    owner: str = ""
    mode: int = 0o400
    socket: Socket | None = None


@attrs.frozen
class Container:
    """A root filesystem, mounts and an image configuration, plus the last exec (for stdout,
    stderr and exit code)."""

    rootfs: Directory
    platform: str
    mounts: tuple[Mount, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    workdir: str = ""
    user: str = ""
    entrypoint: tuple[str, ...] = ()
    default_args: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    exposed_ports: tuple[str, ...] = ()
    #: Variables whose values are secrets: set for execs only, never in the image config.
    secret_env: tuple[tuple[str, SecretRef], ...] = ()
    #: Image configuration only a Dockerfile sets; kept for publishing the image.
    stop_signal: str = ""
    volumes: tuple[str, ...] = ()
    last_exec: Exec | None = None
    annotations: tuple[tuple[str, str], ...] = ()
    #: Dagger's volatile variables: given to execs, their values kept out of cache keys.
    volatile_env: tuple[tuple[str, str], ...] = ()
    default_terminal_cmd: TerminalCommand | None = None
    healthcheck: HealthcheckConfig | None = None
    #: The config blob of the image it came from (history and settings carry over on publish).
    base_config: str = ""
    #: Credentials for publishing: (registry, username, the Secret holding the password).
    registry_auth: tuple[tuple[str, str, Secret], ...] = ()
    #: What `withExposedPort` said of a port beyond `exposed_ports` ("80/tcp"): its
    #: description and whether a service skips its health check.
    port_details: tuple[Port, ...] = ()
    #: Services the container's execs start first and reach by alias (`withServiceBinding`).
    services: tuple[ServiceBinding, ...] = ()


@attrs.frozen
class TerminalCommand:
    """The command `terminal` starts when it is given none (`withDefaultTerminalCmd`)."""

    args: tuple[str, ...]
    insecure_root_capabilities: bool = False
    #: experimentalPrivilegedNesting: the shell reaches the engine's API as the session.
    nesting: bool = False


@attrs.frozen
class HealthcheckConfig:
    """A Docker image healthcheck; durations as Go writes them ("30s", "1m30s")."""

    args: tuple[str, ...]
    shell: bool = False
    interval: str = ""
    timeout: str = ""
    start_period: str = ""
    start_interval: str = ""
    retries: int = 0


@attrs.frozen
class Changeset:
    """The changes that turn `before` into `after`, computed only when a field asks."""

    before: Directory
    after: Directory


@attrs.frozen
class DiffStat:
    path: str
    kind: Literal["ADDED", "MODIFIED", "REMOVED", "RENAMED"]
    added_lines: int = 0
    removed_lines: int = 0
    old_path: str | None = None


@attrs.frozen
class EnvFile:
    """An env file: the variables of `source` (read when a field needs them, not when the
    value is built), then `edits` in order: ("set", name, value), ("unset", name, ""),
    ("namespace", prefix, "")."""

    source: File | None = None
    expand: bool = True
    edits: tuple[tuple[str, str, str], ...] = ()


@attrs.frozen
class Error:
    """A user-made error: a message and named values (JSON text)."""

    message: str
    values: tuple[tuple[str, str], ...] = ()


@attrs.frozen
class ErrorValue:
    name: str
    value: str


@attrs.frozen
class Host:
    """The session's host; paths resolve against the session's working directory."""


@attrs.frozen
class Secret:
    """A secret's name, URI ("" for setSecret) and reference; its value stays in the session's
    `SecretStore`, never in a value, an operation or an ID."""

    name: str
    uri: str
    ref: SecretRef


@attrs.frozen
class EnvVariable:
    name: str
    value: str


@attrs.frozen
class Label:
    name: str
    value: str


@attrs.frozen
class Port:
    port: int
    protocol: Literal["TCP", "UDP"] = "TCP"
    description: str | None = None
    experimental_skip_healthcheck: bool = False


@attrs.frozen
class Service:
    """A service: a container's command to keep running and the ports it serves
    (`solver.services` starts it); a value, named by the digest of its definition."""

    definition: AnyService


@attrs.frozen
class Stat:
    """What `stat` found: Dagger's FileType name, the entry's name, mode bits and size."""

    file_type: str
    name: str
    permissions: int
    size: int


@attrs.frozen
class SearchSubmatch:
    start: int
    end: int
    text: str


@attrs.frozen
class SearchResult:
    file_path: str
    line_number: int
    absolute_offset: int
    matched_lines: str
    submatches: tuple[SearchSubmatch, ...]


@attrs.frozen
class GitRepository:
    """A git repository: a remote `url` (normalised for git; `given_url` is what the user
    wrote), or the repository held by `source` (`Directory.asGit`, `url` empty)."""

    url: str
    given_url: str = ""
    keep_git_dir: bool = True
    auth: GitAuthRef = attrs.field(factory=GitAuthRef)
    source: Directory | None = None
    #: `experimentalServiceHost`: the service serving the remote's host.
    service: ServiceDef | HostServiceDef | None = None


@attrs.frozen
class GitRef:
    """A name in a repository, resolved to `commit` when that is fixed at call time (a commit
    id, a local repository); otherwise each solve asks the remote again."""

    repo: GitRepository
    kind: GitRefKind
    name: str = ""
    commit: str = ""


@attrs.frozen
class Socket:
    """A unix socket of the engine's host, by path."""

    path: str


@attrs.frozen
class EngineRoot:
    """`Query.engine` (and `Engine.localCache`): the engine the session runs on, which holds
    no value of its own; `cache` tells the cache apart."""

    cache: bool = False


@attrs.frozen
class CacheEntrySet:
    """Entries of the engine's cache as read at one moment, the largest first."""

    entries: tuple[CacheEntry, ...]


@attrs.frozen
class Terminal:
    """Dagger's `Terminal`: a shell that was opened (`command`). No field of the API makes
    one today (the `terminal` fields return their parent), so only an ID loads one."""

    command: tuple[str, ...] = ()


@attrs.frozen
class QueryRoot:
    """The `Query` object itself, for `Query.id` and loading that ID back."""


@attrs.frozen
class JSONValue:
    """A JSON value held in the object, no container work: `text` (JSON) or the contents of
    `source` (read only when a leaf needs the value), then `steps` applied in order:
    `("field", path)` picks a member, `("set", path, JSONValue)` sets one."""

    text: str = "null"
    source: File | None = None
    steps: tuple[JSONStep, ...] = ()


JSONStep = tuple[str, tuple[str, ...]] | tuple[str, tuple[str, ...], JSONValue]

Value = (
    Container
    | Directory
    | File
    | CacheVolume
    | Host
    | Secret
    | EnvVariable
    | Label
    | Port
    | HealthcheckConfig
    | Changeset
    | DiffStat
    | EnvFile
    | Error
    | ErrorValue
    | Stat
    | SearchResult
    | SearchSubmatch
    | GitRepository
    | GitRef
    | Socket
    | Service
    | Terminal
    | JSONValue
    | EngineRoot
    | CacheEntrySet
    | CacheEntry
    | QueryRoot
)


@attrs.frozen(eq=False)
class Handle:
    """A value as the schema sees it: its type name and the identity its ID is made from."""

    type_name: str
    ident: str
    value: Value
