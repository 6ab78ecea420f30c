"""The released Dagger Python SDK reads git repositories and HTTP files through dirk: a
repository served over smart HTTP and a file served by loopback servers in the test process,
`git(url).branch(...).tree()` and `http(url)` called from a program inside `dirk run`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.compat.programs import (
    PIPELINES,
    CompatTools,
    RunningEngine,
    assert_cleaned_up,
    run_program,
)
from tests.integration.source_servers import GitRepo, files_app, git_http_app, serve

pytestmark = pytest.mark.integration

PIPELINE = PIPELINES / "dagger_git.py"


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[str, str, dict[str, str]]]:
    repo = GitRepo(tmp_path / "srv" / "project")
    first = repo.commit({"README": "first\n"}, "first")
    repo.git("tag", "v1.0.0")
    second = repo.commit({"README": "compat readme\n", "src/app.py": "print(1)\n"}, "second")
    files = {"/notes.txt": b"served over http\n"}
    with serve(git_http_app(tmp_path / "srv")) as git_base, serve(files_app(files)) as http_base:
        yield f"{git_base}/project", f"{http_base}/notes.txt", {"first": first, "second": second}


def test_python_sdk_git_and_http(
    request: pytest.FixtureRequest,
    compat_tools: CompatTools,
    engine: RunningEngine,
    python_image: str,
    workspace: Path,
    servers: tuple[str, str, dict[str, str]],
) -> None:
    repo_url, file_url, commits = servers
    result = run_program(
        request,
        [
            compat_tools.dirk,
            "run",
            "--",
            compat_tools.python,
            PIPELINE,
            repo_url,
            file_url,
            python_image,
        ],
        cwd=workspace,
        engine=engine,
    )
    got = result.result_json()
    assert got == {
        "entries": [".git/", "README", "src/"],
        "readme": "compat readme\n",
        "commit": commits["second"],
        "tag_commit": commits["first"],
        "tags": ["v1.0.0"],
        "branches": ["main"],
        "git_log": "second\n",  # depth 1 by default, as in Dagger
        "discarded": ["README", "src/"],
        "http": "served over http\n",
        "http_name": "renamed.txt",
    }, result.describe()
    assert_cleaned_up(result)
