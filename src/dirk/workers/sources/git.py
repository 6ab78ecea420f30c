"""Git repositories through the `git` CLI: refs resolved without cloning, commits fetched one at
a time into a bare cache repository per remote, trees exported into layers.

Credentials never reach a command line, a log line or the disk: a token is handed to git by an
askpass helper that reads it from the child's environment, an Authorization header through
`GIT_CONFIG_*` environment variables, an SSH agent through `SSH_AUTH_SOCK`. Messages built from
git's output have any `user:password@` in URLs masked.

A remote whose host the caller maps to an address (`GitAuth.hosts`: a service's hostname to its
bridge address) is reached there without resolving the name: over HTTP(S) by curl's resolve
list (`http.curloptResolve`: the Host header and TLS name stay the URL's), over SSH by
`HostName` (host keys still checked under the URL's name), over git:// by rewriting the URL.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import stat
import subprocess
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Literal

import anyio
import anyio.to_thread
import attrs

from dirk.errors import GitAuthError, GitError, GitRefNotFoundError, InvalidArgumentError
from dirk.workers.snapshots.layers import LayerStore, Snapshot

COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
#: scp-like SSH remotes: `user@host:path` (no scheme, a colon before any slash).
_SCP_RE = re.compile(r"^(?:[^@/]+@)?[^/:]+:(?!//)")
_REMOTE_SCHEMES = frozenset({"http", "https", "ssh", "git", "git+ssh", "ssh+git"})
_USERINFO_RE = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]*@")
_SEMVER_RE = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")
_AUTH_HINTS = (
    "authentication failed",
    "could not read username",
    "could not read password",
    "terminal prompts disabled",
    "permission denied (publickey",
    "http basic: access denied",
    "the requested url returned error: 401",
    "the requested url returned error: 403",
    "host key verification failed",
)
_UNREACHABLE_HINTS = (
    "could not resolve host",
    "connection refused",
    "failed to connect",
    "couldn't connect",
    "connection timed out",
    "network is unreachable",
    "no route to host",
)
_NOT_FOUND_HINTS = (
    "repository not found",
    "does not appear to be a git repository",
    "the requested url returned error: 404",
    "not found",
)
#: What git says when a dumb HTTP remote is asked for a shallow fetch.
_NO_SHALLOW = "does not support shallow"
#: The askpass helper: git runs it with a prompt and reads the answer from its stdout.
_ASKPASS = """#!/bin/sh
case "$1" in
  Username*) printf '%s\\n' "$DIRK_GIT_USERNAME" ;;
  *) printf '%s\\n' "$DIRK_GIT_PASSWORD" ;;
esac
"""

RefKind = Literal["branch", "tag", "commit", "ref", "head"]


#: Every tag of the remote into the same name, moved tags updated.
TAG_REFSPEC = "+refs/tags/*:refs/tags/*"


@attrs.frozen(repr=False)
class GitAuth:
    """How to authenticate to a remote; plaintext, so it lives only as long as one call and
    never in an operation, a key or a repr."""

    username: str = ""
    token: str = ""
    header: str = ""
    ssh_auth_sock: str = ""
    ssh_known_hosts: str = ""
    #: (host name, address) pairs: names reached at an address of the caller's.
    hosts: tuple[tuple[str, str], ...] = ()

    def __repr__(self) -> str:
        return "GitAuth(<redacted>)"


NO_AUTH = GitAuth()


@attrs.frozen
class RemoteRefs:
    """What `git ls-remote` advertised: full ref name -> commit (tags peeled), plus the ref
    HEAD points at, when the server says."""

    refs: Mapping[str, str]
    head_target: str = ""

    def branches(self) -> list[str]:
        return sorted(name for name in self.refs if name.startswith("refs/heads/"))

    def tags(self) -> list[str]:
        return sorted(name for name in self.refs if name.startswith("refs/tags/"))

    def tags_digest(self) -> str:
        """A digest of every tag and what it points at: it changes when a tag moves."""
        text = "".join(f"{name} {self.refs[name]}\n" for name in self.tags())
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


@attrs.frozen
class ResolvedRef:
    """A name resolved against a remote: the full ref name (or the commit id itself) and the
    commit it points at."""

    name: str
    commit: str


def normalize_url(url: str) -> str:
    """The remote as git should see it. Dagger accepts `host/owner/repo` without a scheme
    (https is meant), scp-like `git@host:owner/repo`, and URLs with any scheme git knows."""
    url = url.strip()
    if not url:
        raise InvalidArgumentError("a git URL must not be empty, e.g. https://host/owner/repo")
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    local = url.startswith(("/", ".", "~")) or "::" in url.partition("/")[0]
    if local or (scheme and scheme not in _REMOTE_SCHEMES):
        raise InvalidArgumentError(
            f"git URL {redact(url)!r} is not a remote: git() reads https://, http://, ssh://, "
            "git:// and git@host:path remotes; for a repository on the host use "
            "host().directory(path).asGit()"
        )
    if scheme or _SCP_RE.match(url):
        return url
    return "https://" + url


def redact(text: str) -> str:
    """`text` with the `user:password@` part of any URL in it masked."""
    return _USERINFO_RE.sub(lambda m: m.group("scheme") + "***@", text)


def strip_userinfo(url: str) -> str:
    """`url` without any `user:password@` part."""
    return _USERINFO_RE.sub(lambda m: m.group("scheme"), url)


def remote_id(url: str) -> str:
    """A short, stable name of a remote for its cache directory (credentials left out)."""
    return hashlib.sha256(strip_userinfo(url).encode()).hexdigest()[:24]


def match_patterns(name: str, patterns: Sequence[str]) -> bool:
    """`git ls-remote` pattern rules: a glob matches a ref when it matches the full name or a
    tail of it that starts after a `/` ("v*" matches refs/tags/v1.0)."""
    if not patterns:
        return True
    parts = name.split("/")
    tails = ["/".join(parts[i:]) for i in range(len(parts))]
    return any(fnmatch.fnmatchcase(tail, p) for p in patterns for tail in tails)


def short_name(ref: str) -> str:
    for prefix in ("refs/heads/", "refs/tags/"):
        if ref.startswith(prefix):
            return ref[len(prefix) :]
    return ref


def semver_key(tag: str) -> tuple[int, int, int, int, tuple[tuple[int, int | str], ...]] | None:
    """A sort key for a semver tag (a release sorts after its pre-releases); None otherwise."""
    match = _SEMVER_RE.match(tag)
    if match is None:
        return None
    major, minor, patch, pre = match.groups()
    fields: tuple[tuple[int, int | str], ...] = ()
    if pre:
        fields = tuple((0, int(p)) if p.isdigit() else (1, p) for p in pre.split("."))
    return int(major), int(minor), int(patch), 0 if pre else 1, fields


def resolve_name(refs: RemoteRefs, kind: RefKind, name: str, url: str) -> ResolvedRef:
    """Resolve a branch, tag, ref or commit name against what the remote advertised."""
    shown = redact(url)
    if kind == "commit":
        if not COMMIT_RE.match(name):
            raise InvalidArgumentError(
                f"{name!r} is not a commit id: give the full 40-character hex id "
                "(or use ref() for branch and tag names)"
            )
        return ResolvedRef(name, name)
    if kind == "head":
        commit = refs.refs.get("HEAD")
        if commit is None:
            raise GitRefNotFoundError(f"git remote {shown} has no HEAD (is it empty?)")
        return ResolvedRef(refs.head_target or "HEAD", commit)
    if kind == "branch":
        candidates = ["refs/heads/" + name.removeprefix("refs/heads/")]
    elif kind == "tag":
        candidates = ["refs/tags/" + name.removeprefix("refs/tags/")]
    elif name.startswith("refs/") or name == "HEAD":
        candidates = [name]
    else:
        candidates = [f"refs/heads/{name}", f"refs/tags/{name}", f"refs/{name}"]
    for candidate in candidates:
        commit = refs.refs.get(candidate)
        if commit is not None:
            return ResolvedRef(candidate, commit)
    if kind == "ref" and COMMIT_RE.match(name):
        return ResolvedRef(name, name)
    what = {"branch": "branch", "tag": "tag"}.get(kind, "ref")
    raise GitRefNotFoundError(
        f"git remote {shown} has no {what} {name!r}: check the name "
        "(branches() and tags() list what it has)"
    )


def parse_ls_remote(output: str) -> RemoteRefs:
    """Parse `git ls-remote --symref` output; a peeled tag (`^{}`) gives its commit."""
    refs: dict[str, str] = {}
    peeled: dict[str, str] = {}
    head_target = ""
    for line in output.splitlines():
        left, _, name = line.partition("\t")
        if left.startswith("ref: "):
            if name == "HEAD":
                head_target = left.removeprefix("ref: ")
            continue
        if not name:
            continue
        if name.endswith("^{}"):
            peeled[name.removesuffix("^{}")] = left
        else:
            refs[name] = left
    refs.update(peeled)
    return RemoteRefs(refs, head_target)


class GitSources:
    """The git worker: one bare cache repository per remote under `root`, shared by every
    checkout of that remote and kept across engine runs."""

    def __init__(self, root: Path, tmp: Path) -> None:
        self._root = root
        self._tmp = tmp
        self._locks: dict[str, anyio.Lock] = {}
        root.mkdir(parents=True, exist_ok=True)
        self._askpass = root / "askpass.sh"
        if not self._askpass.exists():
            tmp_file = root / "askpass.sh.tmp"
            tmp_file.write_text(_ASKPASS)
            tmp_file.chmod(0o700)
            os.replace(tmp_file, self._askpass)
        self._empty_home = root / "home"
        self._empty_home.mkdir(exist_ok=True)

    # --- refs -----------------------------------------------------------------------------

    async def ls_remote(self, url: str, auth: GitAuth = NO_AUTH) -> RemoteRefs:
        """Every ref the remote advertises (no clone, no objects transferred)."""
        output = await self._git(["ls-remote", "--symref", "--", url], auth, url=url)
        return parse_ls_remote(output)

    async def resolve(
        self, url: str, kind: RefKind, name: str = "", auth: GitAuth = NO_AUTH
    ) -> ResolvedRef:
        if kind == "commit":
            return resolve_name(RemoteRefs({}), kind, name, url)
        return resolve_name(await self.ls_remote(url, auth), kind, name, url)

    # --- commits --------------------------------------------------------------------------

    async def fetch(
        self,
        url: str,
        commit: str,
        auth: GitAuth = NO_AUTH,
        depth: int = 1,
        ref: str = "",
    ) -> None:
        """Make the cache repository of `url` hold `commit` with `depth` commits of history."""
        repo = self.cache_repo(url)
        async with self._lock(repo):
            await self._fetch(repo, url, commit, auth, depth, ref)

    async def checkout(
        self,
        url: str,
        commit: str,
        layers: LayerStore,
        *,
        auth: GitAuth = NO_AUTH,
        keep_git_dir: bool = False,
        depth: int = 1,
        ref: str = "",
        include_tags: bool = False,
    ) -> Snapshot:
        """A one-layer snapshot of `commit` of `url` (see `export`), fetched into the cache
        first (with the remote's tags too when `include_tags`); the cache repository stays
        locked until the export is done, so a concurrent shallower fetch cannot cut the
        history the export copies."""
        repo = self.cache_repo(url)
        tags = include_tags and keep_git_dir
        async with self._lock(repo):
            await self._fetch(repo, url, commit, auth, depth if keep_git_dir else 1, ref, tags)
            return await anyio.to_thread.run_sync(
                lambda: self.export(
                    repo,
                    commit,
                    layers,
                    keep_git_dir=keep_git_dir,
                    depth=depth,
                    origin=url,
                    include_tags=tags,
                )
            )

    async def common_ancestor(
        self, first: tuple[str, str, GitAuth], second: tuple[str, str, GitAuth]
    ) -> str:
        """The best common ancestor of two commits, given as (url, commit, auth): both
        histories are fetched in full into the first remote's cache repository."""
        (url_a, commit_a, auth_a), (url_b, commit_b, auth_b) = first, second
        repo = self.cache_repo(url_a)
        async with self._lock(repo):
            await self._fetch(repo, url_a, commit_a, auth_a, 0, "")
            await self._fetch(repo, url_b, commit_b, auth_b, 0, "")
            return await self.merge_base(repo, commit_a, commit_b)

    def cache_repo(self, url: str) -> Path:
        return self._root / "r" / remote_id(url)

    async def _fetch(
        self,
        repo: Path,
        url: str,
        commit: str,
        auth: GitAuth,
        depth: int,
        ref: str,
        tags: bool = False,
    ) -> None:
        """`commit` into `repo` (locked by the caller) with `depth` commits of history
        (depth <= 0 = all of it); nothing is fetched for depth 1 if the commit is there.
        With `tags`, the remote's tags are fetched too (and tags it no longer has pruned)."""
        if not (repo / "HEAD").exists():
            await self._init_bare(repo)
        if not tags and depth == 1 and await self.has_commit(repo, commit):
            return
        args = ["-C", str(repo), "fetch", "--no-tags", "--no-write-fetch-head", "--quiet"]
        if depth > 0:
            args.append(f"--depth={depth}")
        elif await self._is_shallow(repo):
            args.append("--unshallow")
        if tags:
            args.append("--prune")
        extra = [TAG_REFSPEC] if tags else []
        try:
            await self._git([*args, "--", url, commit, *extra], auth, url=url)
        except GitAuthError:
            raise
        except GitError as exc:
            if _NO_SHALLOW in str(exc):
                # A dumb HTTP server (static files) cannot cut history: fetch all of it.
                args = [a for a in args if not a.startswith("--depth=")]
            elif not ref.startswith("refs/"):
                raise
            # Servers that refuse to serve an unadvertised commit still serve its ref.
            wanted = ref if ref.startswith("refs/") else commit
            await self._git([*args, "--", url, wanted, *extra], auth, url=url)
        if not await self.has_commit(repo, commit):
            raise GitRefNotFoundError(
                f"git remote {redact(url)} did not send commit {commit}: it may have been "
                "removed by a force-push; resolve the branch or tag again"
            )
        # A ref per fetched commit: the next fetch tells the server what the cache has
        # (only new objects come), and nothing fetched is ever unreachable.
        await self._git(["-C", str(repo), "update-ref", f"refs/dirk/{commit}", commit], NO_AUTH)

    async def merge_base(self, repo: Path, a: str, b: str) -> str:
        """The best common ancestor of two commits in `repo` (which must hold both histories)."""
        try:
            output = await self._git(["-C", str(repo), "merge-base", a, b], NO_AUTH)
        except GitError:
            raise GitRefNotFoundError(f"commits {a} and {b} have no common ancestor") from None
        return output.strip()

    def export(
        self,
        repo: Path,
        commit: str,
        layers: LayerStore,
        *,
        keep_git_dir: bool,
        depth: int,
        origin: str,
        include_tags: bool = False,
    ) -> Snapshot:
        """A one-layer snapshot of `commit`'s tree; with `keep_git_dir`, a `.git` beside it
        that holds `depth` commits of history, HEAD detached at `commit`, `origin` as remote,
        and `repo`'s tags when `include_tags`."""
        with layers.create() as builder:
            os.chmod(builder.path, 0o755)
            if keep_git_dir:
                self._export_with_git(repo, commit, builder.path, depth, origin, include_tags)
            else:
                self._export_tree(repo, commit, builder.path)
            _normalize_modes(builder.path)
        return Snapshot((builder.layer_id,))

    def _export_tree(self, repo: Path, commit: str, dest: Path) -> None:
        index = self._tmp / f"git-index-{os.urandom(6).hex()}"
        env = {"GIT_INDEX_FILE": str(index)}
        try:
            self._git_sync(["--git-dir", str(repo), "read-tree", commit], env)
            self._git_sync(
                ["--git-dir", str(repo), "--work-tree", str(dest), "checkout-index", "-a", "-f"],
                env,
            )
        finally:
            index.unlink(missing_ok=True)

    def _export_with_git(
        self, repo: Path, commit: str, dest: Path, depth: int, origin: str, tags: bool
    ) -> None:
        git = ["-C", str(dest)]
        self._git_sync([*git, "init", "--quiet"], {})
        fetch = [*git, "fetch", "--quiet", "--no-tags", "--no-write-fetch-head"]
        if depth > 0:
            fetch.append(f"--depth={depth}")
        # The cache repository allows fetching any commit it holds (uploadpack config).
        self._git_sync(
            [*fetch, "--", f"file://{repo}", commit, *([TAG_REFSPEC] if tags else [])], {}
        )
        self._git_sync([*git, "checkout", "--quiet", "--detach", commit], {})
        if origin:
            self._git_sync([*git, "remote", "add", "origin", strip_userinfo(origin)], {})

    # --- plumbing -------------------------------------------------------------------------

    @asynccontextmanager
    async def _lock(self, repo: Path) -> AsyncIterator[None]:
        """One fetch per cache repository at a time (the cache lives in the state directory,
        which one engine owns)."""
        lock = self._locks.setdefault(str(repo), anyio.Lock())
        async with lock:
            repo.parent.mkdir(parents=True, exist_ok=True)
            yield

    async def _init_bare(self, repo: Path) -> None:
        staging = repo.with_name(repo.name + f".init-{os.urandom(4).hex()}")
        await self._git(["init", "--bare", "--quiet", str(staging)], NO_AUTH)
        for key, value in (
            ("uploadpack.allowAnySHA1InWant", "true"),
            ("gc.auto", "0"),
            ("core.logAllRefUpdates", "false"),
        ):
            await self._git(["-C", str(staging), "config", key, value], NO_AUTH)
        os.replace(staging, repo)

    async def has_commit(self, repo: Path, commit: str) -> bool:
        """Whether `repo` holds the commit object `commit`."""
        try:
            await self._git(["-C", str(repo), "cat-file", "-e", f"{commit}^{{commit}}"], NO_AUTH)
        except GitError:
            return False
        return True

    async def _is_shallow(self, repo: Path) -> bool:
        out = await self._git(["-C", str(repo), "rev-parse", "--is-shallow-repository"], NO_AUTH)
        return out.strip() == "true"

    def _env(self, auth: GitAuth, extra: Mapping[str, str] = {}, url: str = "") -> dict[str, str]:
        """A minimal environment: no user or system config, no prompts, the credentials, and
        the way to `url`'s host when `auth.hosts` maps it."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self._empty_home),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_TERMINAL_PROMPT": "0",
            # No transport that runs commands (ext::) or reads descriptors (fd::); file is
            # for the engine's own cache repositories and directory snapshots.
            "GIT_ALLOW_PROTOCOL": "http:https:ssh:git:file",
            "GIT_PROTOCOL_FROM_USER": "1",
            "LC_ALL": "C",
        }
        for name in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
            if name in os.environ:
                env[name] = os.environ[name]
        for name in ("NO_PROXY", "GIT_SSL_CAINFO", "SSL_CERT_FILE"):
            if name in os.environ:
                env[name] = os.environ[name]
        config: list[tuple[str, str]] = [
            ("protocol.version", "2"),
            # Local repositories (caches, Directory.asGit) serve any commit they hold, and are
            # owned by whoever made the snapshot.
            ("uploadpack.allowAnySHA1InWant", "true"),
            ("safe.directory", "*"),
        ]
        if auth.token:
            env["GIT_ASKPASS"] = str(self._askpass)
            env["DIRK_GIT_USERNAME"] = auth.username or "x-access-token"
            env["DIRK_GIT_PASSWORD"] = auth.token
        if auth.header:
            config.append(("http.extraHeader", f"Authorization: {auth.header}"))
        # Only the forwarded agent's keys, never the engine host's own ones or its config.
        ssh = ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentityFile=/dev/null"]
        ssh += ["-o", "GlobalKnownHostsFile=/dev/null"]
        if auth.ssh_known_hosts:
            known = self._tmp / f"known-hosts-{os.urandom(6).hex()}"
            known.write_text(auth.ssh_known_hosts.rstrip("\n") + "\n")
            env["DIRK_KNOWN_HOSTS_FILE"] = str(known)
            ssh += ["-o", f"UserKnownHostsFile={known}", "-o", "StrictHostKeyChecking=yes"]
        else:
            ssh += ["-o", "UserKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=no"]
        env["GIT_SSH_COMMAND"] = " ".join(ssh)
        env["GIT_SSH_VARIANT"] = "ssh"
        if auth.ssh_auth_sock:
            env["SSH_AUTH_SOCK"] = auth.ssh_auth_sock
        reach = reach_remote(url, dict(auth.hosts)) if auth.hosts and url else None
        if reach is not None:
            config.extend(reach.config)
            if reach.ssh_options:
                env["GIT_SSH_COMMAND"] += " " + " ".join(reach.ssh_options)
            for name in ("no_proxy", "NO_PROXY"):  # a service is reached directly
                env[name] = ",".join(filter(None, (env.get(name), reach.host)))
        env["GIT_CONFIG_COUNT"] = str(len(config))
        for i, (key, value) in enumerate(config):
            env[f"GIT_CONFIG_KEY_{i}"] = key
            env[f"GIT_CONFIG_VALUE_{i}"] = value
        env.update(extra)
        return env

    async def _git(self, args: Sequence[str], auth: GitAuth, *, url: str = "") -> str:
        env = self._env(auth, url=url)
        try:
            result = await anyio.run_process(["git", *args], env=env, check=False)
        except FileNotFoundError:
            raise GitError(
                "the git command is not installed on the engine's host: install git"
            ) from None
        finally:
            known = env.get("DIRK_KNOWN_HOSTS_FILE")
            if known:
                Path(known).unlink(missing_ok=True)
        if result.returncode != 0:
            raise _classify(args, result.stderr.decode(errors="replace"), url)
        return result.stdout.decode(errors="replace")

    def _git_sync(self, args: Sequence[str], extra: Mapping[str, str]) -> None:
        result = subprocess.run(
            ["git", *args], env=self._env(NO_AUTH, extra), capture_output=True, check=False
        )
        if result.returncode != 0:
            raise _classify(args, result.stderr.decode(errors="replace"), "")


@attrs.frozen
class Reach:
    """How git reaches a remote's host at a given address instead of resolving its name."""

    host: str
    config: tuple[tuple[str, str], ...] = ()
    ssh_options: tuple[str, ...] = ()


_DEFAULT_PORTS = {"http": 80, "https": 443}


def reach_remote(url: str, hosts: Mapping[str, str]) -> Reach | None:
    """The git configuration (or SSH options) that sends `url` to the address `hosts` maps
    its host to; None when its host is not there."""
    scheme, sep, rest = url.partition("://")
    if not sep:  # scp-like: [user@]host:path, always SSH
        authority = url.partition(":")[0]
        scheme, rest = "ssh", authority + "/"
    scheme = scheme.lower()
    authority = rest.partition("/")[0]
    userinfo, at, hostport = authority.rpartition("@")
    host, colon, port = hostport.rpartition(":") if not hostport.endswith("]") else ("", "", "")
    if not colon or not port.isdigit():
        host, port = hostport, ""
    name = host.strip("[]").lower()
    address = hosts.get(name)
    if address is None:
        return None
    shown = f"[{address}]" if ":" in address else address
    if scheme in _DEFAULT_PORTS:
        number = int(port) if port else _DEFAULT_PORTS[scheme]
        return Reach(name, config=(("http.curloptResolve", f"{name}:{number}:{shown}"),))
    if scheme in ("ssh", "git+ssh", "ssh+git"):
        options = ("-o", f"HostName={address}", "-o", f"HostKeyAlias={name}")
        return Reach(name, ssh_options=options)
    # git:// (no TLS, no Host check): the URL itself names the address.
    prefix = f"{scheme}://{userinfo}{at}{hostport}/"
    target = f"{scheme}://{userinfo}{at}{shown}{colon}{port}/"
    return Reach(name, config=((f"url.{target}.insteadOf", prefix),))


def _classify(args: Sequence[str], stderr: str, url: str) -> GitError:
    """A clear error from git's stderr, credentials masked."""
    detail = redact(stderr.strip())
    lowered = detail.lower()
    shown = redact(url)
    if url and any(hint in lowered for hint in _AUTH_HINTS):
        return GitAuthError(
            f"git remote {shown} refused access: check the credentials (httpAuthToken, "
            f"httpAuthHeader, sshAuthSocket, sshKnownHosts) ({detail})"
        )
    if url and any(hint in lowered for hint in _UNREACHABLE_HINTS):
        return GitError(f"git remote {shown} is unreachable: check the URL and network ({detail})")
    if url and any(hint in lowered for hint in _NOT_FOUND_HINTS):
        return GitRefNotFoundError(f"git remote {shown}: not found ({detail})")
    command = "git " + (args[2] if len(args) > 2 and args[0] == "-C" else args[0])
    where = f" for {shown}" if shown else ""
    return GitError(f"{command} failed{where}: {detail}")


def _normalize_modes(root: Path) -> None:
    """Files as git stores them: 0644 or 0755, directories 0755, whatever the umask was."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.chmod(path, 0o755)
        for name in filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                os.chmod(path, 0o755 if st.st_mode & 0o100 else 0o644)
