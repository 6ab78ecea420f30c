"""The operations a pipeline is made of: small immutable values that form a DAG.

An operation never runs anything by itself. The API layer builds operations; the solver turns
them into snapshots. Each operation has outputs (numbered from 0); a `Ref` points at one output,
and is what other operations take as input. Dagger's core types map onto these one to one:

- Directory = (Ref, subdirectory); File = (Ref, path)
- Container = rootfs Ref + mounts + image configuration (env, workdir, user, entrypoint, ...);
  `with_exec` adds an `Exec` whose output 0 is the new rootfs and whose output i (i >= 1) is the
  new content of the i-th writable mount.
- CacheVolume = a name carried by an `ExecMount` of kind "cache".

Cache keys are computed by the solver (`solver.keys`), from an operation's definition and its
inputs' keys; never from host paths or times, and never from secret values.
"""

from __future__ import annotations

import re
import shlex
import weakref
from typing import Literal

import attrs

from dirk.workers.hostaccess import HostUser

#: Longest command a step's name shows (progress views, error messages).
COMMAND_NAME_CHARS = 80

#: Dagger's cache sharing modes.
Sharing = Literal["SHARED", "PRIVATE", "LOCKED"]
MountKind = Literal["bind", "cache", "tmpfs", "secret", "socket"]
#: Dagger's ReturnType: which exit codes count as success.
Expect = Literal["SUCCESS", "FAILURE", "ANY"]


@attrs.frozen(eq=False)
class Ref:
    """One output of one operation.

    Refs point at one shared instance per distinct operation (hashed once, when first seen),
    so hashing or comparing an operation stops at its inputs instead of walking the whole
    chain of steps below it: a chain a few hundred steps long would need more stack than
    Python allows, and every dictionary lookup would walk it.
    """

    op: Op
    output: int = 0

    def __attrs_post_init__(self) -> None:
        shared = _SHARED.setdefault((type(self.op), attrs.astuple(self.op, recurse=False)), self.op)
        if shared is not self.op:
            object.__setattr__(self, "op", shared)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Ref):
            return NotImplemented
        return self.output == other.output and (self.op is other.op or self.op == other.op)

    def __hash__(self) -> int:
        return hash((self.op, self.output))


@attrs.frozen(cache_hash=True)
class Scratch:
    """An empty filesystem."""

    def inputs(self) -> tuple[Ref, ...]:
        return ()

    def describe(self) -> str:
        return "scratch"


@attrs.frozen(cache_hash=True)
class ImagePull:
    """The root filesystem of an image, pinned by manifest digest.

    `reference` is what the user wrote (for messages); `digest` is the resolved manifest digest
    for the chosen platform, and is what the cache key covers.
    """

    reference: str
    digest: str
    platform: str = "linux/amd64"
    #: `from(registryService:)`: the service the reference's registry is reached at, started
    #: for the pull (provenance: the digest names the content).
    registry_service: ServiceDef | HostServiceDef | None = None

    def inputs(self) -> tuple[Ref, ...]:
        return ()

    def describe(self) -> str:
        return f"from {self.reference}"


@attrs.frozen(cache_hash=True)
class HostDirectory:
    """A directory of the engine's host, copied in; keyed by the content of the files it holds.

    `include`/`exclude` are glob patterns relative to `path` (gitignore-like: a pattern without
    a slash matches at any depth); `gitignore` also leaves out what the tree's .gitignore
    files ignore.
    """

    path: str
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    gitignore: bool = False
    #: The content digest, when the API layer computed it at call time; else the solver does.
    digest: str = ""
    #: Whose rights read the host (the session's owner; None: the engine's). Not in the key.
    owner: HostUser | None = None

    def inputs(self) -> tuple[Ref, ...]:
        return ()

    def describe(self) -> str:
        return f"host directory {self.path}"


@attrs.frozen(cache_hash=True)
class HostFile:
    """One file of the engine's host, copied into an otherwise empty filesystem at /<name>."""

    path: str
    digest: str = ""
    #: Whose rights read the host (the session's owner; None: the engine's). Not in the key.
    owner: HostUser | None = None

    def inputs(self) -> tuple[Ref, ...]:
        return ()

    def describe(self) -> str:
        return f"host file {self.path}"


@attrs.frozen(cache_hash=True)
class SecretRef:
    """A secret, as operations name it: never its value.

    `cache_id` is what cache keys cover (the secret's name, its URI, or the cache key the
    user chose), so a changed value reuses cached results, as in Dagger. `handle` says which
    secret of the session this is, for fetching the value from the solve's secret source at
    run time; it is a keyed digest that reveals nothing, and no cache key covers it.
    """

    cache_id: str
    handle: str = ""

    def describe(self) -> str:
        return f"secret {self.cache_id}"


@attrs.frozen(cache_hash=True)
class ExecMount:
    """A mount of an `Exec`.

    - bind: `source` (with `source_path` inside it, a directory or a file) at `target`; when not
      `readonly`, the exec yields a new snapshot of the whole source as an extra output.
    - cache: the cache volume `cache_id` at `target` (content persists across runs and is not
      part of any cache key); `source` optionally seeds a new volume.
    - tmpfs: an empty in-memory filesystem at `target`.
    - secret: a read-only file at `target` holding the value of `secret`, on a tmpfs (never in
      a layer), owned by `owner` (resolved in the container's root; "" = root) with `mode`.
    - socket: the host's unix socket `host_path`, bind-mounted at `target`.
    """

    target: str
    kind: MountKind = "bind"
    source: Ref | None = None
    source_path: str = "/"
    readonly: bool = False
    cache_id: str = ""
    sharing: Sharing = "SHARED"
    size: int = 0  # tmpfs size in bytes; 0 = runtime default
    secret: SecretRef | None = None
    owner: str = ""
    mode: int = 0o400
    #: socket: the host's unix socket forwarded at `target` (where it is, not what it is: no
    #: cache key covers it).
    host_path: str = ""

    @property
    def has_output(self) -> bool:
        return self.kind == "bind" and not self.readonly and self.source is not None


@attrs.frozen(cache_hash=True)
class Exec:
    """Run a command in a container whose root filesystem is `root`.

    Outputs: 0 = the root filesystem after the command; then one per mount with `has_output`,
    in mount order. `expect` is Dagger's ReturnType: SUCCESS (exit code 0), FAILURE (non-zero)
    or ANY; the solver caches only results that met it, so a failure is never cached.
    """

    root: Ref
    args: tuple[str, ...]
    env: tuple[str, ...] = ()
    cwd: str = "/"
    user: str = ""
    hostname: str = ""
    mounts: tuple[ExecMount, ...] = ()
    stdin: bytes | None = None
    expect: Expect = "SUCCESS"
    network: bool = True
    insecure_root_capabilities: bool = False
    #: Absolute paths in the root filesystem that receive the captured stdout/stderr.
    redirect_stdout: str = ""
    redirect_stderr: str = ""
    #: Environment variables whose values are secrets, set only for the command's process.
    secret_env: tuple[tuple[str, SecretRef], ...] = ()
    #: Dagger's volatile variables: passed to the command, but only their names are part of
    #: the cache key (a changed value reuses the cached result; see `keys`).
    volatile_env: tuple[tuple[str, str], ...] = ()
    #: An absolute path in the root filesystem whose content is the command's stdin.
    redirect_stdin: str = ""
    #: The shell a failed run opens for a client that asked for one (`dirk run -i`): the
    #: container's default terminal command; empty for `sh`. Not in the key.
    debug_shell: tuple[str, ...] = ()
    #: Dagger's experimentalPrivilegedNesting: the command reaches the engine's API as the
    #: session that runs it (its port and token are given at run time, never in the op).
    nesting: bool = False
    #: Services started (or joined) before the command runs, reachable by their aliases.
    #: Their definitions are part of the key (their inputs are this step's inputs too);
    #: whether an instance runs is not. Keep last: the key walks fields in `inputs()` order.
    services: tuple[ServiceBinding, ...] = ()

    def inputs(self) -> tuple[Ref, ...]:
        refs = [self.root]
        refs.extend(m.source for m in self.mounts if m.source is not None)
        for binding in self.services:
            refs.extend(binding.service.inputs())
        return tuple(refs)

    def output_mounts(self) -> tuple[ExecMount, ...]:
        """The mounts that yield outputs 1..n, in order."""
        return tuple(m for m in self.mounts if m.has_output)

    def secrets(self) -> tuple[SecretRef, ...]:
        """Every secret the command gets (variables and mounted files), each once."""
        refs = [ref for _, ref in self.secret_env]
        refs.extend(m.secret for m in self.mounts if m.secret is not None)
        return tuple(dict.fromkeys(refs))

    def describe(self) -> str:
        """The command as a shell would read it (`go test ./...`), on one line, cut short."""
        return shown_command(self.args)


@attrs.frozen(cache_hash=True)
class ServicePort:
    """A port a service listens on; TCP ports are health-checked unless `skip_health`."""

    port: int
    protocol: Literal["TCP", "UDP"] = "TCP"
    description: str | None = None
    skip_health: bool = False


@attrs.frozen(cache_hash=True)
class ServiceDef:
    """A service: a long-running command (`exec`, never run to completion, never cached;
    its `services` are the service's own bindings) that is healthy once every TCP port of
    `ports` accepts connections. Not an operation: nothing solves it, it is started by the
    solver's `ServiceManager`. Its digest (`keys.cache_key` over its inputs' keys) names it;
    `hostname` is "" for the name derived from that digest."""

    exec: Exec
    ports: tuple[ServicePort, ...] = ()
    hostname: str = ""

    def inputs(self) -> tuple[Ref, ...]:
        return self.exec.inputs()

    def describe(self) -> str:
        return "service " + " ".join(self.exec.args)


@attrs.frozen(cache_hash=True)
class ForwardPort:
    """One forwarded port (Dagger's PortForward): `frontend` is where clients connect (0: a
    free port the kernel picks), `backend` where the traffic goes."""

    frontend: int
    backend: int
    protocol: Literal["TCP", "UDP"] = "TCP"


@attrs.frozen(cache_hash=True)
class HostServiceDef:
    """`Host.service`: a service whose ports (`frontend`s) relay to `host:backend` as the
    engine's host reaches it (`solver.tunnels` runs it in a network namespace of its own)."""

    host: str
    forwards: tuple[ForwardPort, ...]
    hostname: str = ""

    @property
    def ports(self) -> tuple[ServicePort, ...]:
        return tuple(
            ServicePort(f.frontend, f.protocol, _forward_text(f, self.host), skip_health=True)
            for f in self.forwards
        )

    def inputs(self) -> tuple[Ref, ...]:
        return ()

    def describe(self) -> str:
        return f"host service {', '.join(_forward_text(f, self.host) for f in self.forwards)}"


@attrs.frozen(cache_hash=True)
class TunnelDef:
    """`Host.tunnel`: listeners on the host's loopback (`frontend` 0: a free port) relaying
    to `backend` ports of the container service `upstream`."""

    upstream: ServiceDef
    forwards: tuple[ForwardPort, ...]
    hostname: str = ""

    @property
    def ports(self) -> tuple[ServicePort, ...]:
        """The ports asked for (0 for a free one; the running tunnel knows which)."""
        return tuple(ServicePort(f.frontend, f.protocol, skip_health=True) for f in self.forwards)

    def inputs(self) -> tuple[Ref, ...]:
        return self.upstream.inputs()

    def describe(self) -> str:
        ports = ", ".join(f"{f.frontend or 'random'}->{f.backend}" for f in self.forwards)
        return f"tunnel {ports} to {self.upstream.describe()}"


def _forward_text(f: ForwardPort, host: str) -> str:
    return f"{f.protocol} {f.frontend} -> {host}:{f.backend}"


#: Whatever the service manager runs: a container's command, a host service, a tunnel.
AnyService = ServiceDef | HostServiceDef | TunnelDef


@attrs.frozen(cache_hash=True)
class ServiceBinding:
    """`service`, reachable as host name `alias` from the container of an `Exec`."""

    alias: str
    service: ServiceDef | HostServiceDef


@attrs.frozen(cache_hash=True)
class MkFile:
    """`base` with a file at `path` (parents created) holding `contents`."""

    base: Ref
    path: str
    contents: bytes
    mode: int = 0o644
    uid: int = 0
    gid: int = 0

    def inputs(self) -> tuple[Ref, ...]:
        return (self.base,)

    def describe(self) -> str:
        return f"write file {self.path}"


@attrs.frozen(cache_hash=True)
class MkDir:
    """`base` with a directory at `path` (parents created)."""

    base: Ref
    path: str
    mode: int = 0o755

    def inputs(self) -> tuple[Ref, ...]:
        return (self.base,)

    def describe(self) -> str:
        return f"create directory {self.path}"


@attrs.frozen(cache_hash=True)
class Remove:
    """`base` without the file or directory at `path` (missing is fine when `allow_missing`)."""

    base: Ref
    path: str
    allow_missing: bool = True

    def inputs(self) -> tuple[Ref, ...]:
        return (self.base,)

    def describe(self) -> str:
        return f"remove {self.path}"


@attrs.frozen(cache_hash=True)
class Copy:
    """`base` with `source_path` of `source` copied to `dest_path`.

    A directory source copies its contents into `dest_path` (created when missing); a file
    source is written at `dest_path` exactly. `include`/`exclude` (and `gitignore`: the
    source's .gitignore files) filter a directory copy; `owner` ("uid:gid"), when set, owns
    every copied entry.
    """

    base: Ref
    dest_path: str
    source: Ref
    source_path: str = "/"
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    owner: str = ""
    mode: int | None = None
    gitignore: bool = False

    def inputs(self) -> tuple[Ref, ...]:
        return (self.base, self.source)

    def describe(self) -> str:
        return f"copy {self.source_path} to {self.dest_path}"


@attrs.frozen(cache_hash=True)
class Symlink:
    """`base` with a symlink at `link_name` (parents created) whose content is `target`."""

    base: Ref
    target: str
    link_name: str

    def inputs(self) -> tuple[Ref, ...]:
        return (self.base,)

    def describe(self) -> str:
        return f"symlink {self.link_name} -> {self.target}"


@attrs.frozen(cache_hash=True)
class SetTimestamps:
    """`base` with the access and modification times of `path` and everything below it set
    to `timestamp` (seconds since the epoch); symlinks themselves, never their targets."""

    base: Ref
    path: str
    timestamp: int

    def inputs(self) -> tuple[Ref, ...]:
        return (self.base,)

    def describe(self) -> str:
        return f"set timestamps of {self.path} to {self.timestamp}"


@attrs.frozen(cache_hash=True)
class Chown:
    """`base` with `path` and everything below it owned by `owner` ("uid[:gid]" or names,
    resolved in the tree's own /etc/passwd and /etc/group)."""

    base: Ref
    path: str
    owner: str

    def inputs(self) -> tuple[Ref, ...]:
        return (self.base,)

    def describe(self) -> str:
        return f"chown {self.path} to {self.owner}"


@attrs.frozen(cache_hash=True)
class ApplyPatch:
    """`base` with the git-style patch in file `patch_path` of `patch` applied in directory
    `path` (with `git apply`)."""

    base: Ref
    path: str
    patch: Ref
    patch_path: str

    def inputs(self) -> tuple[Ref, ...]:
        return (self.base, self.patch)

    def describe(self) -> str:
        return f"apply patch {self.patch_path} in {self.path}"


@attrs.frozen(cache_hash=True)
class DiffTrees:
    """A comparison of directory `before_path` of `before` with `after_path` of `after`.

    `kind` says what output 0 holds:
    - "layer": a tree of only what `after` added or modified (Dagger's `diff`, `layer`);
    - "paths": /changes.json, the added, modified and removed paths;
    - "stats": /changes.json as for "paths", plus added and removed lines per path;
    - "patch": /diff.patch, a git-style patch from `before` to `after` (`git diff`).
    """

    before: Ref
    before_path: str
    after: Ref
    after_path: str
    kind: Literal["layer", "paths", "stats", "patch"] = "layer"

    def inputs(self) -> tuple[Ref, ...]:
        return (self.before, self.after)

    def describe(self) -> str:
        return f"compare {self.before_path} with {self.after_path} ({self.kind})"


@attrs.frozen(cache_hash=True)
class ApplyChanges:
    """`base` with the changes from (`before`, `before_path`) to (`after`, `after_path`)
    applied in directory `path`: removed paths removed, added and modified ones copied."""

    base: Ref
    path: str
    before: Ref
    before_path: str
    after: Ref
    after_path: str

    def inputs(self) -> tuple[Ref, ...]:
        return (self.base, self.before, self.after)

    def describe(self) -> str:
        return f"apply changes in {self.path}"


@attrs.frozen(cache_hash=True)
class ExtractArchive:
    """`base` with the tar archive (plain, gzip, bzip2 or xz) at `source_path` of `source`
    unpacked into `dest_path` (Dockerfile `ADD` of a local archive)."""

    base: Ref
    dest_path: str
    source: Ref
    source_path: str

    def inputs(self) -> tuple[Ref, ...]:
        return (self.base, self.source)

    def describe(self) -> str:
        return f"extract {self.source_path} into {self.dest_path}"


@attrs.frozen(cache_hash=True)
class ChangeSide:
    """One changeset of a `MergeChanges`: from (`before`, `before_path`) to (`after`,
    `after_path`)."""

    before: Ref
    before_path: str
    after: Ref
    after_path: str


#: Dagger's ChangesetMergeConflict (ChangesetsMergeConflict is its first two).
MergeConflict = Literal[
    "FAIL_EARLY", "FAIL", "LEAVE_CONFLICT_MARKERS", "PREFER_OURS", "PREFER_THEIRS"
]


@attrs.frozen(cache_hash=True)
class MergeChanges:
    """Directory `path` of `base` (the merged `before` trees) with the changes of every side
    merged in by git: a 3-way merge for two sides, an octopus merge for more. The first side
    is "ours"."""

    base: Ref
    path: str
    sides: tuple[ChangeSide, ...]
    on_conflict: MergeConflict = "FAIL"

    def inputs(self) -> tuple[Ref, ...]:
        refs = [self.base]
        for side in self.sides:
            refs.extend((side.before, side.after))
        return tuple(refs)

    def describe(self) -> str:
        return f"merge {len(self.sides)} changesets"


@attrs.frozen(cache_hash=True)
class RenderEnvFile:
    """A tree holding /.env: the variables of the `.env` file at `source_path` of `source`
    (none when `source` is None) after `edits`, one `NAME=value` line each (`envfiles`)."""

    source: Ref | None
    source_path: str
    edits: tuple[tuple[str, str, str], ...] = ()
    expand: bool = True

    def inputs(self) -> tuple[Ref, ...]:
        return (self.source,) if self.source is not None else ()

    def describe(self) -> str:
        return f"write env file from {self.source_path or 'nothing'}"


@attrs.frozen(cache_hash=True)
class ImagePlatform:
    """One platform's image of a container: its root filesystem and image settings.

    `base_config` is the config blob digest of the image the container started from (its
    history and other settings carry over); "" for scratch. `healthcheck` is the config's
    Healthcheck object as JSON ("" keeps the base's); `annotations` go into the manifest.
    """

    rootfs: Ref
    platform: str
    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    workdir: str = ""
    user: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    exposed_ports: tuple[str, ...] = ()
    base_config: str = ""
    healthcheck: str = ""
    annotations: tuple[tuple[str, str], ...] = ()


#: Layer compression of an image out: "gzip", "zstd", "none", or "" (reuse what a layer has).
ImageCompression = Literal["", "gzip", "zstd", "none"]
ImageMediaTypes = Literal["oci", "docker"]


@attrs.frozen(cache_hash=True)
class ImageTarball:
    """An OCI image tarball of `images` (the first the main platform, the others its
    variants): output 0 holds it as the file `/image.tar`."""

    images: tuple[ImagePlatform, ...]
    compression: ImageCompression = ""
    media_types: ImageMediaTypes = "oci"

    def inputs(self) -> tuple[Ref, ...]:
        return tuple(i.rootfs for i in self.images)

    def describe(self) -> str:
        return "image tarball"


@attrs.frozen(cache_hash=True)
class DockerImageSave:
    """The image `name` of the Docker daemon at `socket` as a `docker save` tarball, the file
    `/image.tar` of output 0; `image_id` (its config digest) is what it holds, so the key
    covers that alone (name and socket say where it came from)."""

    socket: str
    name: str
    image_id: str

    def inputs(self) -> tuple[Ref, ...]:
        return ()

    def describe(self) -> str:
        return f"image {self.name} from the Docker image store"


@attrs.frozen(cache_hash=True)
class ImageImport:
    """The root filesystem of the image `manifest_digest` held by the image tarball at
    `path` of `source` (read again only when its blobs have left the store)."""

    source: Ref
    path: str
    manifest_digest: str
    platform: str
    tag: str = ""

    def inputs(self) -> tuple[Ref, ...]:
        return (self.source,)

    def describe(self) -> str:
        return f"import image {self.path}"


GitRefKind = Literal["branch", "tag", "commit", "ref", "head"]


@attrs.frozen(cache_hash=True)
class GitAuthRef:
    """How to authenticate to a git remote, by reference only: secrets (never their values),
    a host socket path, known hosts. Not part of any cache key (a commit is what it is,
    whoever may fetch it)."""

    username: str = ""
    token: SecretRef | None = None
    header: SecretRef | None = None
    ssh_auth_socket: str = ""
    ssh_known_hosts: str = ""


@attrs.frozen(cache_hash=True)
class GitCheckout:
    """The tree of one commit of a git repository, with its `.git` when `keep_git_dir`.

    The key covers `commit` and the checkout options only: a commit id names its content, so
    `url`, the ref name that led to it and the credentials are provenance. When `commit` is
    empty, the solver resolves `kind`/`name` against the remote when it computes the key (a
    moved branch gives a new key). `source`, when set, is a directory holding the repository
    (`Directory.asGit`) instead of a remote; `url` is then empty.
    """

    url: str
    kind: GitRefKind = "head"
    name: str = ""
    commit: str = ""
    keep_git_dir: bool = False
    depth: int = 1
    source: Ref | None = None
    auth: GitAuthRef = attrs.field(factory=GitAuthRef)
    #: The repository's tags too in the kept `.git` (only with `keep_git_dir`).
    include_tags: bool = False
    #: With `include_tags` from a remote: the digest of its tags (`RemoteRefs.tags_digest`),
    #: filled when the key is computed unless the API did (a remote needing secrets or a
    #: service).
    tags: str = ""
    #: `experimentalServiceHost`: the service serving the remote's host, started for the
    #: fetch (provenance: its inputs are not the checkout's).
    service: ServiceDef | HostServiceDef | None = None

    def inputs(self) -> tuple[Ref, ...]:
        return (self.source,) if self.source is not None else ()

    def describe(self) -> str:
        from dirk.workers.sources.git import redact  # here: ops stay import-light

        where = redact(self.url) if self.url else "directory"
        return f"git {where} {self.name or self.kind} {self.commit[:12]}".rstrip()


@attrs.frozen(cache_hash=True)
class HttpFetch:
    """A file downloaded over HTTP, at /<name> of an otherwise empty filesystem.

    The key covers the content (`digest`, the sha256 of the bytes), `name` and `permissions`;
    the URL, the expected `checksum`, the auth header's secret and the `service` serving the
    URL's host are provenance. When `digest` is empty the solver downloads the file when it
    computes the key (the blob store keeps it, so the work itself only copies it into a layer).
    """

    url: str
    name: str
    permissions: int = 0o644
    checksum: str = ""
    digest: str = ""
    auth_header: SecretRef | None = None
    #: `experimentalServiceHost`: the service serving the URL's host (held while downloading;
    #: provenance, its inputs are not the fetch's).
    service: ServiceDef | HostServiceDef | None = None

    def inputs(self) -> tuple[Ref, ...]:
        return ()

    def describe(self) -> str:
        from dirk.workers.sources.http import shown_url  # here: ops stay import-light

        return f"download {shown_url(self.url)}"


def shown_command(args: tuple[str, ...], limit: int = COMMAND_NAME_CHARS) -> str:
    """`args` shell-quoted, with line breaks and runs of blanks shown as one space, at most
    `limit` characters (cut with an ellipsis): a step name a person recognises."""
    text = " ".join(" ".join(_quoted(arg) for arg in args).split())
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _quoted(arg: str) -> str:
    """`shlex.quote`, but an argument holding single quotes and nothing a shell expands in
    double quotes reads as `"it's"` rather than `'it'"'"'s'`."""
    if "'" in arg and not _EXPANDED_IN_DOUBLE_QUOTES.search(arg):
        return f'"{arg}"'
    return shlex.quote(arg)


#: What a shell reads differently between double quotes: expansions, quotes, escapes.
_EXPANDED_IN_DOUBLE_QUOTES = re.compile(r'["$`!]|\\[$`"\\\n]|\\$')


Op = (
    Scratch
    | ImagePull
    | DockerImageSave
    | HostDirectory
    | HostFile
    | Exec
    | MkFile
    | MkDir
    | Remove
    | Copy
    | Symlink
    | SetTimestamps
    | Chown
    | ApplyPatch
    | DiffTrees
    | ApplyChanges
    | ExtractArchive
    | MergeChanges
    | RenderEnvFile
    | ImageTarball
    | ImageImport
    | GitCheckout
    | HttpFetch
)

#: The instance of each distinct operation that Refs point at (see `Ref`), by its type and
#: field values (which never hold the operation itself, so an unused one is dropped).
_SHARED: weakref.WeakValueDictionary[tuple[type, tuple[object, ...]], Op] = (
    weakref.WeakValueDictionary()
)
