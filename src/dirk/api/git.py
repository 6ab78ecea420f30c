"""`GitRepository` and `GitRef`: git repositories, remote (`Query.git`) or held by a directory
(`Directory.asGit`). A remote branch or tag is resolved again whenever something is solved
(a moved branch gives new content); a commit id, or any name in a local repository, is fixed
when the call is made. Checkouts are cached by commit. A remote served by a session's service
(`experimentalServiceHost`) is asked only while the service is held: its names are resolved
when a tree is asked for, and the fetch starts the service again."""

from __future__ import annotations

from contextlib import AsyncExitStack

from dirk.api.context import RequestContext
from dirk.api.directory import SCRATCH, rebased, without
from dirk.api.registry import Args, builds, leaf
from dirk.api.secret import load_secret
from dirk.api.service import service_host
from dirk.api.values import Changeset, Directory, GitRef, GitRepository, Handle, Socket
from dirk.errors import GitRefNotFoundError, InvalidArgumentError
from dirk.solver.ops import GitAuthRef, GitCheckout, GitRefKind, Ref, SecretRef
from dirk.solver.service_hosts import served_hosts
from dirk.solver.sources import SecretSource
from dirk.workers.sources.git import (
    RemoteRefs,
    ResolvedRef,
    match_patterns,
    normalize_url,
    resolve_name,
    semver_key,
    short_name,
)


def session_secrets(ctx: RequestContext) -> SecretSource:
    """This session's secrets by handle, for the calls the API makes itself."""
    return ctx.table.secrets.plaintext


def _repo(parent: Handle | None) -> GitRepository:
    assert parent is not None and isinstance(parent.value, GitRepository)
    return parent.value


def _ref(parent: Handle | None) -> GitRef:
    assert parent is not None and isinstance(parent.value, GitRef)
    return parent.value


async def _refs(ctx: RequestContext, repo: GitRepository) -> RemoteRefs:
    """What the repository has now: asked of the remote (through its service, held for the
    call), or read from the directory."""
    sources = ctx.solver.sources
    if repo.source is not None:
        snapshot = await ctx.solver.solve(ctx.job, rebased(repo.source))
        return await sources.local_refs(snapshot)
    async with served_hosts(ctx.solver.services, ctx.job, repo.service) as hosts:
        return await sources.remote_refs(repo.url, repo.auth, session_secrets(ctx), hosts)


async def _resolve(ctx: RequestContext, ref: GitRef) -> ResolvedRef:
    if ref.commit:
        return ResolvedRef(ref.name or ref.commit, ref.commit)
    return resolve_name(await _refs(ctx, ref.repo), ref.kind, ref.name, _shown(ref.repo))


def _shown(repo: GitRepository) -> str:
    return repo.url or "in the directory"


async def _make_ref(
    ctx: RequestContext, repo: GitRepository, kind: GitRefKind, name: str
) -> GitRef:
    """A ref of `repo`: fixed now for a commit id or a local repository, else left to be
    resolved at each solve."""
    if kind == "commit":
        resolved = resolve_name(RemoteRefs({}), "commit", name, _shown(repo))
        if repo.source is not None:
            snapshot = await ctx.solver.solve(ctx.job, rebased(repo.source))
            await ctx.solver.sources.local_commit(snapshot, resolved.commit)
        return GitRef(repo, kind, name, resolved.commit)
    if repo.source is not None:
        resolved = resolve_name(await _refs(ctx, repo), kind, name, _shown(repo))
        return GitRef(repo, kind, resolved.name, resolved.commit)
    return GitRef(repo, kind, name)


# --- roots -------------------------------------------------------------------------------


@builds("Query", "git")
async def query_git(ctx: RequestContext, parent: Handle | None, args: Args) -> GitRepository:
    url = normalize_url(args["url"])
    socket_path = ""
    if args.get("sshAuthSocket"):
        socket = ctx.load(args["sshAuthSocket"], "Socket").value
        assert isinstance(socket, Socket)
        socket_path = socket.path
    auth = GitAuthRef(
        username=args.get("httpAuthUsername") or "",
        token=await _secret_ref(ctx, args.get("httpAuthToken")),
        header=await _secret_ref(ctx, args.get("httpAuthHeader")),
        ssh_auth_socket=socket_path,
        ssh_known_hosts=args.get("sshKnownHosts") or "",
    )
    service = service_host(ctx, args.get("experimentalServiceHost"), "git")
    return GitRepository(url, args["url"], bool(args["keepGitDir"]), auth, service=service)


async def _secret_ref(ctx: RequestContext, secret_id: object) -> SecretRef | None:
    """The secret an ID argument names, its value read now so steps can have it."""
    if not secret_id:
        return None
    return (await load_secret(ctx, secret_id)).ref


@builds("Directory", "asGit")
async def directory_as_git(ctx: RequestContext, parent: Handle | None, args: Args) -> GitRepository:
    assert parent is not None and isinstance(parent.value, Directory)
    return GitRepository("", "", True, source=parent.value)


# --- GitRepository -----------------------------------------------------------------------


@builds("GitRepository", "branch")
async def repo_branch(ctx: RequestContext, parent: Handle | None, args: Args) -> GitRef:
    return await _make_ref(ctx, _repo(parent), "branch", args["name"])


@builds("GitRepository", "tag")
async def repo_tag(ctx: RequestContext, parent: Handle | None, args: Args) -> GitRef:
    return await _make_ref(ctx, _repo(parent), "tag", args["name"])


@builds("GitRepository", "commit")
async def repo_commit(ctx: RequestContext, parent: Handle | None, args: Args) -> GitRef:
    return await _make_ref(ctx, _repo(parent), "commit", args["id"])


@builds("GitRepository", "ref")
async def repo_ref(ctx: RequestContext, parent: Handle | None, args: Args) -> GitRef:
    return await _make_ref(ctx, _repo(parent), "ref", args["name"])


@builds("GitRepository", "head")
async def repo_head(ctx: RequestContext, parent: Handle | None, args: Args) -> GitRef:
    return await _make_ref(ctx, _repo(parent), "head", "")


@builds("GitRepository", "latestVersion")
async def repo_latest_version(ctx: RequestContext, parent: Handle | None, args: Args) -> GitRef:
    repo = _repo(parent)
    refs = await _refs(ctx, repo)
    versions = [
        (key, tag) for tag in map(short_name, refs.tags()) if (key := semver_key(tag)) is not None
    ]
    if not versions:
        raise GitRefNotFoundError(
            f"git repository {_shown(repo)} has no semantic version tag (like v1.2.3)"
        )
    latest = max(versions)[1]
    if repo.source is not None:
        return GitRef(repo, "tag", f"refs/tags/{latest}", refs.refs[f"refs/tags/{latest}"])
    return GitRef(repo, "tag", latest)


def _names(refs: list[str], patterns: list[str] | None) -> list[str]:
    return [short_name(name) for name in refs if match_patterns(name, patterns or ())]


@leaf("GitRepository", "tags", memo=False)
async def repo_tags(ctx: RequestContext, parent: Handle | None, args: Args) -> list[str]:
    return _names((await _refs(ctx, _repo(parent))).tags(), args.get("patterns"))


@leaf("GitRepository", "branches", memo=False)
async def repo_branches(ctx: RequestContext, parent: Handle | None, args: Args) -> list[str]:
    return _names((await _refs(ctx, _repo(parent))).branches(), args.get("patterns"))


@builds("GitRepository", "uncommitted")
async def repo_uncommitted(ctx: RequestContext, parent: Handle | None, args: Args) -> Changeset:
    """A directory's repository: its working tree (less `.git`) against the tree of HEAD.
    A remote has no working tree, so nothing is uncommitted."""
    repo = _repo(parent)
    if repo.source is None:
        return Changeset(before=SCRATCH, after=SCRATCH)
    head = await _make_ref(ctx, repo, "head", "")
    committed = GitCheckout("", kind="head", commit=head.commit, source=rebased(repo.source))
    return Changeset(before=Directory(Ref(committed), "/"), after=without(repo.source, ".git"))


@leaf("GitRepository", "url", memo=False)
async def repo_url(ctx: RequestContext, parent: Handle | None, args: Args) -> str | None:
    repo = _repo(parent)
    return repo.given_url or None


# --- GitRef ------------------------------------------------------------------------------


@leaf("GitRef", "commit", memo=False)
async def ref_commit(ctx: RequestContext, parent: Handle | None, args: Args) -> str:
    return (await _resolve(ctx, _ref(parent))).commit


@leaf("GitRef", "ref", memo=False)
async def ref_ref(ctx: RequestContext, parent: Handle | None, args: Args) -> str:
    return (await _resolve(ctx, _ref(parent))).name


@builds("GitRef", "tree")
async def ref_tree(ctx: RequestContext, parent: Handle | None, args: Args) -> Directory:
    ref = _ref(parent)
    repo = ref.repo
    keep = repo.keep_git_dir and not args["discardGitDir"]
    depth = int(args["depth"]) if keep else 1
    include_tags = keep and bool(args["includeTags"])
    commit, tags = ref.commit, ""
    if repo.auth.token or repo.auth.header or repo.service is not None:
        # Keys are computed without the session's secrets, outside any session: a remote that
        # needs a secret or a session's service is resolved now, with them (the fetch gets
        # them again when it runs).
        if not commit:
            commit = (await _resolve(ctx, ref)).commit
        if include_tags:
            tags = (await _refs(ctx, repo)).tags_digest()
    op = GitCheckout(
        repo.url,
        kind=ref.kind,
        name=ref.name,
        commit=commit,
        keep_git_dir=keep,
        depth=depth,
        source=rebased(repo.source) if repo.source is not None else None,
        auth=repo.auth,
        include_tags=include_tags,
        tags=tags,
        service=repo.service,
    )
    return Directory(Ref(op), "/")


@builds("GitRef", "commonAncestor")
async def ref_common_ancestor(ctx: RequestContext, parent: Handle | None, args: Args) -> GitRef:
    ref = _ref(parent)
    other = ctx.load(args["other"], "GitRef").value
    assert isinstance(other, GitRef)
    mine, theirs = await _resolve(ctx, ref), await _resolve(ctx, other)
    sources = ctx.solver.sources
    if ref.repo.source is not None:
        if other.repo.source != ref.repo.source:
            raise InvalidArgumentError(
                "commonAncestor of a ref in a directory's repository needs another ref of the "
                "same repository"
            )
        snapshot = await ctx.solver.solve(ctx.job, rebased(ref.repo.source))
        base = await sources.local_merge_base(snapshot, mine.commit, theirs.commit)
    elif other.repo.source is not None:
        raise InvalidArgumentError(
            "commonAncestor of a remote ref needs another remote ref, not one in a directory"
        )
    else:
        async with AsyncExitStack() as stack:
            hosts: dict[str, str] = {}
            for service in dict.fromkeys((ref.repo.service, other.repo.service)):
                served = served_hosts(ctx.solver.services, ctx.job, service)
                hosts.update(await stack.enter_async_context(served))
            base = await sources.merge_base(
                (ref.repo.url, mine.commit, ref.repo.auth),
                (other.repo.url, theirs.commit, other.repo.auth),
                session_secrets(ctx),
                hosts,
            )
    return GitRef(ref.repo, "commit", base, base)
