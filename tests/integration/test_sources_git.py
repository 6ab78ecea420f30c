"""git sources end to end: a repository served over smart HTTP by `git http-backend` on
loopback, read through the API by a real engine (ls-remote, fetch into the cache repository,
export into layers, containers that run git on the checkout)."""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dirk.engine import EngineCore
from dirk.engine.sessions import Session
from tests.integration.schema_client import SchemaClient
from tests.integration.source_servers import (
    GitRepo,
    Requests,
    SshServer,
    git_http_app,
    serve,
    ssh_server,
    unix_echo_server,
)

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


class Client(SchemaClient):
    """One session (its own token), querying the schema the way the wire server does."""

    def __init__(self, engine: EngineCore, workdir: Path) -> None:
        super().__init__(engine, Session(secrets.token_hex(8), workdir, {}, time.time()))


class Fixture:
    def __init__(self, repo: GitRepo, url: str, commits: dict[str, str]) -> None:
        self.repo = repo
        self.url = url
        self.commits = commits


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Fixture]:
    """A repository with branches main and dev, a lightweight tag v1.0.0, an annotated tag
    v1.1.0 and a pre-release tag v2.0.0-rc.1, served on loopback."""
    repo = GitRepo(tmp_path / "srv" / "repo")
    first = repo.commit(
        {"README": "first\n", "bin/run.sh": "#!/bin/sh\necho run\n"}, "first", {"bin/run.sh": 0o755}
    )
    repo.git("tag", "v1.0.0")
    second = repo.commit({"README": "second\n"}, "second")
    repo.git("tag", "-a", "v1.1.0", "-m", "release 1.1.0")
    repo.git("checkout", "--quiet", "-b", "dev", first)
    dev = repo.commit({"DEV": "on dev\n"}, "dev work")
    repo.git("tag", "v2.0.0-rc.1")
    repo.git("checkout", "--quiet", "main")
    with serve(git_http_app(tmp_path / "srv")) as base:
        yield Fixture(repo, f"{base}/repo", {"first": first, "second": second, "dev": dev})


@pytest.fixture
def client(engine: EngineCore, workdir: Path) -> Client:
    return Client(engine, workdir)


async def _contents(client: Client, url: str, ref: str, path: str, **tree: Any) -> str:
    args = ", ".join(
        f"{k}: {str(v).lower() if isinstance(v, bool) else v}" for k, v in tree.items()
    )
    tree_call = f"tree({args})" if args else "tree"
    data = await client.data(
        f'query($url: String!) {{ git(url: $url) {{ {ref} {{ {tree_call} {{ file(path: "{path}") '
        "{ contents } } } } }",
        url=url,
    )
    node = data["git"]
    while "contents" not in node:
        node = next(iter(node.values()))
    return str(node["contents"])


async def test_branch_tag_commit_head_and_ref_resolve(client: Client, served: Fixture) -> None:
    c = served.commits
    data = (
        await client.data(
            "query($url: String!, $first: String!) { git(url: $url) {"
            ' main: branch(name: "main") { commit ref }'
            ' dev: branch(name: "dev") { commit ref }'
            ' light: tag(name: "v1.0.0") { commit ref }'
            ' annotated: tag(name: "v1.1.0") { commit ref }'
            " byId: commit(id: $first) { commit ref }"
            " head { commit ref }"
            ' short: ref(name: "dev") { commit ref }'
            ' full: ref(name: "refs/tags/v1.0.0") { commit }'
            " latestVersion { commit ref }"
            " url"
            " } }",
            url=served.url,
            first=c["first"],
        )
    )["git"]
    assert data["main"] == {"commit": c["second"], "ref": "refs/heads/main"}
    assert data["dev"] == {"commit": c["dev"], "ref": "refs/heads/dev"}
    assert data["light"] == {"commit": c["first"], "ref": "refs/tags/v1.0.0"}
    assert data["annotated"] == {"commit": c["second"], "ref": "refs/tags/v1.1.0"}
    assert data["byId"] == {"commit": c["first"], "ref": c["first"]}
    assert data["head"] == {"commit": c["second"], "ref": "refs/heads/main"}
    assert data["short"]["commit"] == c["dev"]
    assert data["full"]["commit"] == c["first"]
    # v2.0.0-rc.1 is a pre-release of 2.0.0, but still above 1.1.0.
    assert data["latestVersion"] == {"commit": c["dev"], "ref": "refs/tags/v2.0.0-rc.1"}
    assert data["url"] == served.url


async def test_tags_and_branches_with_patterns(client: Client, served: Fixture) -> None:
    data = (
        await client.data(
            "query($url: String!) { git(url: $url) {"
            " allTags: tags"
            ' ones: tags(patterns: ["v1*"])'
            ' full: tags(patterns: ["refs/tags/v2*"])'
            " allBranches: branches"
            ' devOnly: branches(patterns: ["dev"])'
            ' none: branches(patterns: ["nothing*"])'
            " } }",
            url=served.url,
        )
    )["git"]
    assert data["allTags"] == ["v1.0.0", "v1.1.0", "v2.0.0-rc.1"]
    assert data["ones"] == ["v1.0.0", "v1.1.0"]
    assert data["full"] == ["v2.0.0-rc.1"]
    assert data["allBranches"] == ["dev", "main"]
    assert data["devOnly"] == ["dev"]
    assert data["none"] == []


async def test_tree_contents_of_branches_tags_and_modes(client: Client, served: Fixture) -> None:
    assert await _contents(client, served.url, 'branch(name: "main")', "README") == "second\n"
    assert await _contents(client, served.url, 'tag(name: "v1.0.0")', "README") == "first\n"
    assert await _contents(client, served.url, 'branch(name: "dev")', "DEV") == "on dev\n"
    data = await client.data(
        'query($url: String!) { git(url: $url) { branch(name: "main") {'
        " tree(discardGitDir: true) { entries } } } }",
        url=served.url,
    )
    assert data["git"]["branch"]["tree"]["entries"] == ["README", "bin/"]


async def test_keep_git_dir_gives_a_working_git_log(
    client: Client, served: Fixture, python_ref: str
) -> None:
    query = (
        "query($url: String!, $image: String!, $keep: Boolean!) {"
        ' git(url: $url, keepGitDir: $keep) { branch(name: "main") { tree(depth: 2) {'
        " entries id } } }"
        " container { from(address: $image) { id } } }"
    )
    kept = await client.data(query, url=served.url, image=python_ref, keep=True)
    tree = kept["git"]["branch"]["tree"]
    assert ".git/" in tree["entries"]
    data = await client.data(
        "query($image: String!, $src: ID!) { container { from(address: $image) {"
        ' withMountedDirectory(path: "/src", source: $src) { withWorkdir(path: "/src") {'
        ' withExec(args: ["sh", "-c", "git log --format=%s && git status --porcelain && '
        'git remote get-url origin"]) { stdout } } } } } }',
        image=python_ref,
        src=tree["id"],
    )
    out = data["container"]["from"]["withMountedDirectory"]["withWorkdir"]["withExec"]["stdout"]
    assert out == f"second\nfirst\n{served.url}\n"

    discarded = await client.data(query, url=served.url, image=python_ref, keep=False)
    assert ".git/" not in discarded["git"]["branch"]["tree"]["entries"]


async def test_a_new_commit_gives_new_content_and_the_old_commit_stays_cached(
    engine: EngineCore, workdir: Path, served: Fixture, busybox_ref: str
) -> None:
    async def token_of(ref: str) -> str:
        # A new session each time (no memo); the step prints a random token, so the same
        # token again proves a cache hit.
        client = Client(engine, workdir)
        data = await client.data(
            "query($url: String!) { git(url: $url) { " + ref + " { tree(discardGitDir: true)"
            " { id } } } }",
            url=served.url,
        )
        tree_id = next(iter(data["git"].values()))["tree"]["id"]
        out = await client.data(
            "query($image: String!, $src: ID!) { container { from(address: $image) {"
            ' withMountedDirectory(path: "/src", source: $src) {'
            ' withExec(args: ["sh", "-c", "cat /src/README; head -c 8 /dev/urandom | od -An -tx1"])'
            " { stdout } } } } }",
            image=busybox_ref,
            src=tree_id,
        )
        return str(out["container"]["from"]["withMountedDirectory"]["withExec"]["stdout"])

    old_commit = served.commits["second"]
    before = await token_of('branch(name: "main")')
    assert before.startswith("second\n")
    third = served.repo.commit({"README": "third\n"}, "third")
    after = await token_of('branch(name: "main")')
    assert after.startswith("third\n"), "a moved branch must give the new commit's content"
    assert after != before
    pinned = await token_of(f'commit(id: "{old_commit}")')
    assert pinned == before, "the old commit's step must come from the cache"
    again = await token_of('branch(name: "main")')
    assert again == after
    assert third != old_commit


async def test_unknown_branch_and_bad_commit_are_clear_errors(
    client: Client, served: Fixture
) -> None:
    message = await client.error_message(
        'query($url: String!) { git(url: $url) { branch(name: "nope") { commit } } }',
        url=served.url,
    )
    assert "no branch 'nope'" in message
    message = await client.error_message(
        'query($url: String!) { git(url: $url) { commit(id: "abc") { commit } } }',
        url=served.url,
    )
    assert "40-character" in message
    message = await client.error_message(
        'query { git(url: "http://127.0.0.1:9/none") { head { commit } } }'
    )
    assert "unreachable" in message


async def test_common_ancestor(client: Client, served: Fixture) -> None:
    data = await client.data(
        'query($url: String!, $dev: ID!) { git(url: $url) { branch(name: "main") {'
        " commonAncestor(other: $dev) { commit } } } }",
        url=served.url,
        dev=(
            await client.data(
                'query($url: String!) { git(url: $url) { branch(name: "dev") { id } } }',
                url=served.url,
            )
        )["git"]["branch"]["id"],
    )
    assert data["git"]["branch"]["commonAncestor"]["commit"] == served.commits["first"]


async def test_directory_as_git(client: Client, served: Fixture, workdir: Path) -> None:
    data = await client.data(
        "query($path: String!, $first: String!) { host { directory(path: $path) { asGit {"
        ' branches tags dev: branch(name: "dev") { commit tree { file(path: "DEV") { contents } } }'
        " head { ref commit }"
        " old: commit(id: $first) { tree(discardGitDir: true) { entries } } } } } }",
        path=str(served.repo.path),
        first=served.commits["first"],
    )
    repo = data["host"]["directory"]["asGit"]
    assert repo["branches"] == ["dev", "main"]
    assert repo["tags"] == ["v1.0.0", "v1.1.0", "v2.0.0-rc.1"]
    assert repo["dev"]["commit"] == served.commits["dev"]
    assert repo["dev"]["tree"]["file"]["contents"] == "on dev\n"
    assert repo["head"] == {"ref": "refs/heads/main", "commit": served.commits["second"]}
    assert repo["old"]["tree"]["entries"] == ["README", "bin/"]
    message = await client.error_message(
        "query($path: String!) { host { directory(path: $path) { asGit { head { commit } } } } }",
        path=str(workdir),
    )
    assert "no git repository" in message


@pytest.fixture
def private(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(url, token) of a repository that needs HTTP basic auth with that token."""
    repo = GitRepo(tmp_path / "private" / "secret-repo")
    repo.commit({"SECRET": "classified\n"}, "private")
    token = secrets.token_hex(12)
    expected = "Basic " + base64.b64encode(f"x-access-token:{token}".encode()).decode()
    requests = Requests()
    with serve(git_http_app(tmp_path / "private", expected, requests)) as base:
        yield f"{base}/secret-repo", token


async def test_http_token_auth(client: Client, private: tuple[str, str]) -> None:
    url, token = private
    query = 'query($token: String!) { setSecret(name: "tok", plaintext: $token) { id } }'
    secret_id = (await client.data(query, token=token))["setSecret"]["id"]
    data = await client.data(
        "query($url: String!, $tok: ID!) { git(url: $url, httpAuthToken: $tok) {"
        ' head { tree { file(path: "SECRET") { contents } } } } }',
        url=url,
        tok=secret_id,
    )
    assert data["git"]["head"]["tree"]["file"]["contents"] == "classified\n"

    wrong = (await client.data(query, token="wrong"))["setSecret"]["id"]
    message = await client.error_message(
        "query($url: String!, $tok: ID!) { git(url: $url, httpAuthToken: $tok) {"
        " head { commit } } }",
        url=url,
        tok=wrong,
    )
    assert "refused access" in message
    assert "wrong" not in message
    message = await client.error_message(
        "query($url: String!) { git(url: $url) { head { commit } } }", url=url
    )
    assert "refused access" in message


@pytest.fixture
def ssh(tmp_path: Path) -> Iterator[tuple[SshServer, GitRepo]]:
    repo = GitRepo(tmp_path / "ssh-repos" / "over-ssh")
    repo.commit({"HELLO": "over ssh\n"}, "ssh")
    with ssh_server(tmp_path / "sshd") as server:
        yield server, repo


async def test_ssh_with_a_forwarded_agent_and_known_hosts(
    client: Client, ssh: tuple[SshServer, GitRepo]
) -> None:
    server, repo = ssh
    sock = (
        await client.data(
            "query($sock: String!) { host { unixSocket(path: $sock) { id } } }",
            sock=str(server.agent_socket),
        )
    )["host"]["unixSocket"]["id"]
    query = (
        "query($url: String!, $sock: ID, $known: String!) {"
        " git(url: $url, sshAuthSocket: $sock, sshKnownHosts: $known) {"
        ' branch(name: "main") { tree { file(path: "HELLO") { contents } } } } }'
    )
    url = server.url(repo.path)
    data = await client.data(query, url=url, sock=sock, known=server.known_hosts)
    assert data["git"]["branch"]["tree"]["file"]["contents"] == "over ssh\n"

    other_key = server.known_hosts.rsplit(" ", 1)[0] + " " + "A" * 68
    message = await client.error_message(query, url=url, sock=sock, known=other_key)
    assert "refused access" in message
    message = await client.error_message(query, url=url, sock=None, known=server.known_hosts)
    assert "refused access" in message
    message = await client.error_message(
        "query($sock: String!) { host { unixSocket(path: $sock) { id } } }",
        sock=str(repo.path / "HELLO"),
    )
    assert "is not a unix socket" in message


async def test_with_unix_socket_forwards_a_host_socket(
    client: Client, tmp_path: Path, python_ref: str
) -> None:
    talk = (
        "import socket, os\n"
        "if not os.path.exists('/run/echo.sock'):\n"
        "    print('no socket')\n"
        "else:\n"
        "    s = socket.socket(socket.AF_UNIX)\n"
        "    s.connect('/run/echo.sock')\n"
        "    s.sendall(b'ping')\n"
        "    print(s.recv(100).decode())\n"
    )
    with unix_echo_server(tmp_path / "echo.sock") as path:
        sock = (
            await client.data(
                "query($p: String!) { host { unixSocket(path: $p) { id } } }", p=str(path)
            )
        )["host"]["unixSocket"]["id"]
        data = await client.data(
            "query($image: String!, $sock: ID!, $talk: String!) { container {"
            " from(address: $image) {"
            ' withUnixSocket(path: "/run/echo.sock", source: $sock) {'
            ' with: withExec(args: ["python", "-c", $talk]) { stdout }'
            ' withoutUnixSocket(path: "/run/echo.sock") {'
            ' withExec(args: ["python", "-c", $talk]) { stdout } } } } } }',
            image=python_ref,
            sock=sock,
            talk=talk,
        )
    forwarded = data["container"]["from"]["withUnixSocket"]
    assert forwarded["with"]["stdout"] == "echo:ping\n"
    assert forwarded["withoutUnixSocket"]["withExec"]["stdout"] == "no socket\n"


async def _git_in(client: Client, image: str, tree_id: str, script: str) -> str:
    data = await client.data(
        "query($image: String!, $src: ID!, $script: String!) { container { from(address: $image)"
        ' { withMountedDirectory(path: "/src", source: $src) { withWorkdir(path: "/src") {'
        ' withExec(args: ["sh", "-c", $script]) { stdout } } } } } }',
        image=image,
        src=tree_id,
        script=script,
    )
    return str(
        data["container"]["from"]["withMountedDirectory"]["withWorkdir"]["withExec"]["stdout"]
    )


async def test_include_tags_fetches_the_remotes_tags_as_they_are_when_solved(
    engine: EngineCore, workdir: Path, served: Fixture, python_ref: str
) -> None:
    query = (
        'query($url: String!, $tags: Boolean!) { git(url: $url) { branch(name: "main") {'
        " tree(includeTags: $tags) { id } } } }"
    )

    async def tags(include: bool) -> str:
        client = Client(engine, workdir)  # a new session each time (no memo)
        tree = (await client.data(query, url=served.url, tags=include))["git"]["branch"]["tree"]
        return await _git_in(client, python_ref, tree["id"], "git tag --list")

    assert await tags(False) == ""
    assert await tags(True) == "v1.0.0\nv1.1.0\nv2.0.0-rc.1\n"
    # A tag made on the remote afterwards shows in the next solve (the key covers the tags).
    served.repo.git("tag", "v3.0.0", served.commits["dev"])
    served.repo.git("tag", "-d", "v1.0.0")
    assert await tags(True) == "v1.1.0\nv2.0.0-rc.1\nv3.0.0\n"
    # The annotated tag stays annotated and names its commit.
    client = Client(engine, workdir)
    tree = (await client.data(query, url=served.url, tags=True))["git"]["branch"]["tree"]
    out = await _git_in(
        client, python_ref, tree["id"], "git cat-file -t v1.1.0 && git rev-parse v1.1.0^{commit}"
    )
    assert out == f"tag\n{served.commits['second']}\n"
    # Without a .git there is nothing to put tags in.
    data = await client.data(
        'query($url: String!) { git(url: $url) { branch(name: "main") {'
        " tree(includeTags: true, discardGitDir: true) { entries } } } }",
        url=served.url,
    )
    assert data["git"]["branch"]["tree"]["entries"] == ["README", "bin/"]


async def test_include_tags_of_a_directorys_repository(
    client: Client, served: Fixture, python_ref: str
) -> None:
    data = await client.data(
        "query($path: String!) { host { directory(path: $path) { asGit { head {"
        " tree(includeTags: true) { id } } } } } }",
        path=str(served.repo.path),
    )
    tree_id = data["host"]["directory"]["asGit"]["head"]["tree"]["id"]
    out = await _git_in(client, python_ref, tree_id, "git tag --list")
    assert out == "v1.0.0\nv1.1.0\nv2.0.0-rc.1\n"


async def test_uncommitted_of_a_directorys_repository_and_of_a_remote(
    engine: EngineCore, workdir: Path, served: Fixture
) -> None:
    client = Client(engine, workdir)
    path = served.repo.path
    (path / "README").write_text("edited, not committed\n")
    (path / "NEW").write_text("untracked\n")
    (path / "bin" / "run.sh").unlink()
    data = await client.data(
        "query($path: String!) { host { directory(path: $path) { asGit { uncommitted {"
        " isEmpty addedPaths modifiedPaths removedPaths"
        ' after { file(path: "README") { contents } } } } } } }',
        path=str(path),
    )
    changes = data["host"]["directory"]["asGit"]["uncommitted"]
    assert changes["isEmpty"] is False
    assert changes["addedPaths"] == ["NEW"]
    assert changes["modifiedPaths"] == ["README"]
    assert changes["removedPaths"] == ["bin/run.sh"]
    assert changes["after"]["file"]["contents"] == "edited, not committed\n"

    served.repo.git("checkout", "--quiet", "--", ".")
    (path / "NEW").unlink()
    client = Client(engine, workdir)  # a new session: the host directory is read again
    data = await client.data(
        "query($path: String!) { host { directory(path: $path) { asGit {"
        " uncommitted { isEmpty addedPaths } } } } }",
        path=str(path),
    )
    assert data["host"]["directory"]["asGit"]["uncommitted"] == {"isEmpty": True, "addedPaths": []}

    data = await client.data(
        "query($url: String!) { git(url: $url) { uncommitted { isEmpty addedPaths"
        " removedPaths } } }",
        url=served.url,
    )
    assert data["git"]["uncommitted"] == {"isEmpty": True, "addedPaths": [], "removedPaths": []}


async def test_with_unix_socket_under_an_owner_relays_to_the_host_socket(
    client: Client, tmp_path: Path, python_ref: str
) -> None:
    """The container's user 1000 may use the socket only because it owns the relayed one
    (mode 0660): without an owner the root-owned 0600 host socket would refuse it."""
    talk = (
        "import os, socket\n"
        "st = os.stat('/run/echo.sock')\n"
        "print(f'{st.st_uid}:{st.st_gid} {st.st_mode & 0o777:o}')\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "s.connect('/run/echo.sock')\n"
        "s.sendall(b'ping')\n"
        "print(s.recv(100).decode())\n"
    )
    query = (
        "query($image: String!, $sock: ID!, $talk: String!, $owner: String!) { container {"
        ' from(address: $image) { withUser(name: "1000") {'
        ' withUnixSocket(path: "/run/echo.sock", source: $sock, owner: $owner) {'
        ' withExec(args: ["python", "-c", $talk]) { stdout } } } } } }'
    )
    with unix_echo_server(tmp_path / "echo.sock") as path:
        path.chmod(0o600)
        sock = (
            await client.data(
                "query($p: String!) { host { unixSocket(path: $p) { id } } }", p=str(path)
            )
        )["host"]["unixSocket"]["id"]
        data = await client.data(query, image=python_ref, sock=sock, talk=talk, owner="1000")
        out = data["container"]["from"]["withUser"]["withUnixSocket"]["withExec"]["stdout"]
        assert out == "1000:1000 660\necho:ping\n"
        message = await client.error_message(
            query, image=python_ref, sock=sock, talk=talk, owner=""
        )
        assert "exit code: 1" in message  # PermissionError: the host socket is 0600 root
    assert [p.name for p in (tmp_path).iterdir() if p.name.startswith("sock-")] == []
