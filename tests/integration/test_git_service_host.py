"""`git(experimentalServiceHost:)`: a git remote served by a container service of the session.

A python:3.11 service makes a repository, serves it bare over dumb HTTP (`git
update-server-info` + `python -m http.server`) and over git:// (`git daemon`); the SDK asks
the remote for its refs and checks trees out through it, by the service's hostname, which only
the service makes reachable. A real `dirk engine` daemon, driven as a user's program would.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

import dirk
from dirk.errors import GitError
from tests.integration.sdk_engine import RunningEngine, foreground_engine

pytestmark = [pytest.mark.integration]

#: The service: a repository with one commit on main and a tag, served two ways.
GIT_SERVER = """
set -e
git init -q -b main /src
cd /src
echo "hello $RUN" > README
git add README
git -c user.name=t -c user.email=t@example.com commit -qm one
git tag v1.0.0
echo "second $RUN" > README
git -c user.name=t -c user.email=t@example.com commit -qam two
git clone -q --bare /src /srv/repo.git
git -C /srv/repo.git update-server-info
git daemon --reuseaddr --export-all --base-path=/srv --listen=0.0.0.0 --port=9418 /srv &
exec python -m http.server 8080 --bind 0.0.0.0 -d /srv
"""


@pytest.fixture(scope="module")
def engine() -> Iterator[RunningEngine]:
    yield from foreground_engine()


@pytest.fixture
def client(engine: RunningEngine, tmp_path: Path) -> Iterator[dirk.Client[dirk.Sync]]:
    with dirk.Connection(dirk.Config(engine=engine.socket_url, workdir=tmp_path)) as client:
        yield client


def git_server(client: dirk.Client[dirk.Sync], image: str, run: str) -> dirk.Service[dirk.Sync]:
    return (
        client.container()
        .from_(image)
        .with_env_variable("RUN", run)
        .with_exposed_port(8080)
        .with_exposed_port(9418)
        .as_service(args=["sh", "-c", GIT_SERVER])
        .with_hostname("gitsrv")
    )


@pytest.mark.parametrize("url", ["http://gitsrv:8080/repo.git", "git://gitsrv/repo.git"])
def test_a_remote_served_by_a_service_is_listed_and_checked_out(
    client: dirk.Client[dirk.Sync], python_ref: str, url: str
) -> None:
    run = secrets.token_hex(6)
    repo = client.git(url, experimental_service_host=git_server(client, python_ref, run))
    assert repo.tags() == ["v1.0.0"]
    assert repo.branches() == ["main"]
    assert repo.branch("main").tree().file("README").contents() == f"second {run}\n"
    tagged = repo.tag("v1.0.0").tree(discard_git_dir=True)
    assert tagged.file("README").contents() == f"hello {run}\n"
    assert tagged.entries() == ["README"]
    kept = repo.head().tree(depth=2)
    log = (
        client.container()
        .from_(python_ref)
        .with_directory("/repo", kept)
        .with_workdir("/repo")
        .with_exec(["git", "log", "--format=%s"])
        .stdout()
    )
    assert log.split() == ["two", "one"]


def test_without_the_service_the_hostname_names_nothing(client: dirk.Client[dirk.Sync]) -> None:
    with pytest.raises(GitError, match="gitsrv"):
        client.git("http://gitsrv:8080/repo.git").tags()
