"""The solver's side of git and HTTP sources: what their keys are made from and how their
results are made.

Keys come first. A `GitCheckout` without a commit is resolved against its remote
(`git ls-remote`) when its key is computed, and an `HttpFetch` without a digest is downloaded
then (into the blob store, by content): both keys are volatile, like those of host
directories, so a moved branch or a changed file gives a new key the next time. The work
itself only exports a cached commit or copies a stored blob into a layer.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from pathlib import Path

import anyio.to_thread
import attrs

from dirk.errors import GitRefNotFoundError, HostPathError, InvalidArgumentError, SecretError
from dirk.solver.mounts import StepMounts
from dirk.solver.ops import ExecMount, GitAuthRef, GitCheckout, HttpFetch, SecretRef
from dirk.state.blobs import BlobStore
from dirk.workers.executor.spec import BindMount
from dirk.workers.snapshots.layers import LayerStore, Snapshot
from dirk.workers.snapshots.snapshotter import Snapshotter
from dirk.workers.sources.git import NO_AUTH, GitAuth, GitSources, RemoteRefs, ResolvedRef
from dirk.workers.sources.http import HttpSources

#: The plaintext of a secret by its handle (the session's `SecretStore.plaintext`); raises
#: `SecretError` for a secret it does not know.
SecretSource = Callable[[str], bytes]


def _no_secrets(handle: str) -> bytes:
    raise SecretError("this step needs a secret, but was solved without the session's secrets")


class Sources:
    """Keys and results of `GitCheckout` and `HttpFetch`."""

    def __init__(
        self,
        git: GitSources,
        http: HttpSources,
        layers: LayerStore,
        blobs: BlobStore,
        snapshotter: Snapshotter,
    ) -> None:
        self.git = git
        self.http = http
        self._layers = layers
        self._blobs = blobs
        self._snap = snapshotter

    @classmethod
    def default(cls, layers: LayerStore, blobs: BlobStore, snapshotter: Snapshotter) -> Sources:
        """Sources over the state directory of `layers` (its git cache, its tmp)."""
        layout = layers.layout
        git = GitSources(layout.git, layout.tmp)
        return cls(git, HttpSources(blobs), layers, blobs, snapshotter)

    # --- auth -----------------------------------------------------------------------------

    @staticmethod
    def git_auth(
        ref: GitAuthRef,
        secrets: SecretSource = _no_secrets,
        hosts: Mapping[str, str] | None = None,
    ) -> GitAuth:
        """`ref`'s credentials in plaintext; `hosts`: names reached at an address of the
        caller's (a running service's)."""
        if ref == GitAuthRef() and not hosts:
            return NO_AUTH
        return GitAuth(
            username=ref.username,
            token=_secret(secrets, ref.token),
            header=_secret(secrets, ref.header),
            ssh_auth_sock=ref.ssh_auth_socket,
            ssh_known_hosts=ref.ssh_known_hosts,
            hosts=tuple(sorted((hosts or {}).items())),
        )

    # --- keys -----------------------------------------------------------------------------

    async def resolve_git(self, op: GitCheckout, secrets: SecretSource = _no_secrets) -> str:
        """The commit `op` stands for now (asked of the remote unless `op` names one)."""
        if op.commit:
            return op.commit
        resolved = await self.git.resolve(op.url, op.kind, op.name, self.git_auth(op.auth, secrets))
        return resolved.commit

    async def remote_refs(
        self,
        url: str,
        auth: GitAuthRef,
        secrets: SecretSource = _no_secrets,
        hosts: Mapping[str, str] | None = None,
    ) -> RemoteRefs:
        return await self.git.ls_remote(url, self.git_auth(auth, secrets, hosts))

    async def keyed_http(
        self,
        op: HttpFetch,
        secrets: SecretSource = _no_secrets,
        hosts: Mapping[str, str] | None = None,
    ) -> tuple[HttpFetch, bool]:
        """`op` with its content digest, and whether that digest is volatile (downloaded now)
        or fixed (the expected checksum, whose blob is already stored). `hosts`: names
        reached at an address of the caller's (a running service's)."""
        if op.digest:
            return op, False
        if op.checksum and self._blobs.has(op.checksum):
            return attrs.evolve(op, digest=op.checksum), False
        download = await self.http.download(
            op.url,
            auth_header=_secret(secrets, op.auth_header),
            checksum=op.checksum or None,
            hosts=hosts,
        )
        return attrs.evolve(op, digest=download.digest), not op.checksum

    # --- results --------------------------------------------------------------------------

    async def checkout(
        self,
        op: GitCheckout,
        commit: str,
        source: Snapshot | None,
        secrets: SecretSource = _no_secrets,
        hosts: Mapping[str, str] | None = None,
    ) -> Snapshot:
        """Export `commit` of the remote (fetched into its cache repository first) or of the
        repository in the `source` directory."""
        if source is None:
            return await self.git.checkout(
                op.url,
                commit,
                self._layers,
                auth=self.git_auth(op.auth, secrets, hosts),
                keep_git_dir=op.keep_git_dir,
                depth=op.depth,
                ref=_full_ref(op),
                include_tags=op.include_tags,
            )
        async with AsyncExitStack() as stack:
            view = await StepMounts(self._snap, stack).read_only(source)
            repo = git_dir_of(view)
            return await anyio.to_thread.run_sync(
                lambda: self.git.export(
                    repo,
                    commit,
                    self._layers,
                    keep_git_dir=op.keep_git_dir,
                    depth=op.depth,
                    origin="",
                    include_tags=op.include_tags,
                )
            )

    async def fetched_file(
        self,
        op: HttpFetch,
        secrets: SecretSource = _no_secrets,
        hosts: Mapping[str, str] | None = None,
    ) -> Snapshot:
        """A layer holding the stored blob of `op.digest` at /<name>; the blob is downloaded
        again (and must match) if it is gone from the store."""
        if not self._blobs.has(op.digest):
            await self.http.download(
                op.url,
                auth_header=_secret(secrets, op.auth_header),
                checksum=op.digest,
                hosts=hosts,
            )
        return await anyio.to_thread.run_sync(self._file_layer, op)

    def _file_layer(self, op: HttpFetch) -> Snapshot:
        with self._layers.create() as builder:
            os.chmod(builder.path, 0o755)
            target = builder.path / op.name
            with open(self._blobs.path(op.digest), "rb") as src, open(target, "xb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
            os.chmod(target, op.permissions)
        return Snapshot((builder.layer_id,))

    async def merge_base(
        self,
        first: tuple[str, str, GitAuthRef],
        second: tuple[str, str, GitAuthRef],
        secrets: SecretSource = _no_secrets,
        hosts: Mapping[str, str] | None = None,
    ) -> str:
        """The best common ancestor of two remote commits, given as (url, commit, auth)."""
        (url_a, commit_a, auth_a), (url_b, commit_b, auth_b) = first, second
        return await self.git.common_ancestor(
            (url_a, commit_a, self.git_auth(auth_a, secrets, hosts)),
            (url_b, commit_b, self.git_auth(auth_b, secrets, hosts)),
        )

    async def local_merge_base(self, source: Snapshot, first: str, second: str) -> str:
        async with AsyncExitStack() as stack:
            view = await StepMounts(self._snap, stack).read_only(source)
            return await self.git.merge_base(git_dir_of(view), first, second)

    # --- local repositories (Directory.asGit) ---------------------------------------------

    async def local_refs(self, source: Snapshot) -> RemoteRefs:
        """The refs of the repository held by a directory snapshot."""
        async with AsyncExitStack() as stack:
            view = await StepMounts(self._snap, stack).read_only(source)
            return await self.git.ls_remote(str(git_dir_of(view)))

    async def local_commit(self, source: Snapshot, commit: str) -> ResolvedRef:
        """`commit`, checked to exist in the repository of a directory snapshot."""
        async with AsyncExitStack() as stack:
            view = await StepMounts(self._snap, stack).read_only(source)
            if not await self.git.has_commit(git_dir_of(view), commit):
                raise GitRefNotFoundError(f"the repository in the directory has no commit {commit}")
        return ResolvedRef(commit, commit)


def socket_mount(mount: ExecMount) -> BindMount:
    """A forwarded host unix socket (`Container.withUnixSocket`), checked to be there still."""
    path = Path(mount.host_path)
    try:
        is_socket = stat.S_ISSOCK(path.stat().st_mode)
    except OSError:
        is_socket = False
    if not is_socket:
        raise HostPathError(
            f"host socket {path} (forwarded to {mount.target}) is gone or no longer a socket: "
            "start what serves it again, or pass the socket it has now"
        )
    return BindMount(path, mount.target, readonly=False)


def git_dir_of(root: Path) -> Path:
    """The git directory of a tree: its `.git` (a directory), or the tree itself when bare."""
    dot_git = root / ".git"
    if dot_git.is_dir():
        return dot_git
    if (root / "HEAD").is_file() and (root / "objects").is_dir():
        return root
    raise InvalidArgumentError(
        "the directory holds no git repository (no .git directory at its root): asGit needs "
        "a checkout with its .git, e.g. from host().directory(path) or git(url).tree()"
    )


def _full_ref(op: GitCheckout) -> str:
    if op.kind == "branch":
        return "refs/heads/" + op.name.removeprefix("refs/heads/")
    if op.kind == "tag":
        return "refs/tags/" + op.name.removeprefix("refs/tags/")
    return op.name if op.name.startswith("refs/") else ""


def _secret(secrets: SecretSource, ref: SecretRef | None) -> str:
    if ref is None:
        return ""
    return secrets(ref.handle).decode("utf-8", errors="replace")
